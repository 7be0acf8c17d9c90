"""The objects of the image on screen: a table (id, category, score, area, reviewed) linked to the canvas
(selecting a row selects the mask, clicking a mask selects its row), a colour-by toggle (category or object)
above it, also the key K on the canvas, and a legend of what the colours mean: the category names with their
colours, or, colouring by object, that each object has its own. Reads only what ProjectView already holds: no engine
call, no work beyond filling the table."""
from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._layers import DISCARDED_RGBA, category_colour, category_label, legend_html, object_colour, object_legend_html

COLUMNS = ("id", "category", "score", "area", "reviewed")
COLOUR_MODES = ("category", "object")
COLOUR_KEY = "K"  # toggles the colour mode on the canvas; napari binds K to nothing
MIN_ROWS_SHOWN = 5


class ObjectsPanel(QWidget):
    def __init__(self, view, parent=None):
        super().__init__(parent)
        self.view = view
        self._filling = False
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        rows_header, header = self.table.verticalHeader(), self.table.horizontalHeader()
        assert rows_header is not None and header is not None  # a QTableWidget always has both
        rows_header.setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSortingEnabled(True)
        # largest first until the user sorts by another column (the objects worth a look, not the last id)
        header.setSortIndicator(COLUMNS.index("area"), Qt.SortOrder.DescendingOrder)
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        # a few rows stay in view when the tab is shorter than the dock: the tab scrolls, the table keeps its rows
        self.table.setMinimumHeight(header.sizeHint().height() + MIN_ROWS_SHOWN * rows_header.defaultSectionSize())
        self.colour_by = QComboBox()
        self.colour_by.addItems(COLOUR_MODES)
        self.colour_by.setToolTip(f"Colour masks by their category, or each object apart, so that parts of one "
                                  f"category show as parts (key {COLOUR_KEY} on the image switches).")
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        form = QFormLayout()  # above the table, which takes the rest of the height: never scrolled away
        form.addRow(f"Colour by ({COLOUR_KEY})", self.colour_by)
        form.addRow("Legend", self.legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(QLabel("Objects of this image:"))
        layout.addWidget(self.table, 1)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.colour_by.currentTextChanged.connect(lambda mode: self.view.set_colour_by_object(mode == "object"))
        view.objects_changed.connect(self.fill)
        view.image_shown.connect(lambda _: self.fill())
        view.object_selected.connect(self.select)
        view.viewer.bind_key(COLOUR_KEY, lambda _viewer: self.toggle_colour_mode(), overwrite=True)

    def toggle_colour_mode(self) -> None:
        """Colour by object after by category, and back (the key K)."""
        self.colour_by.setCurrentText(COLOUR_MODES[1 - COLOUR_MODES.index(self.colour_by.currentText())])

    def fill(self) -> None:
        data, table = self.view.current, self.view.table
        if data is None or table is None:
            return
        self._filling = True
        self.table.setSortingEnabled(False)
        ids = sorted(data["classes"])
        self.table.setRowCount(len(ids))
        by_id = table.by_id()
        for row, instance_id in enumerate(ids):
            raw = data["classes"][instance_id]
            resolved = table.resolve(raw)
            category = by_id.get(resolved if resolved is not None else raw)
            # two decimals as the selection line says it; as text of one width, it sorts as the number does
            values = (instance_id, category_label(table, raw), f"{float(data['scores'].get(instance_id, 1.0)):.2f}",
                      int(data.get("areas", {}).get(instance_id, 0)),
                      "yes" if instance_id in data["reviewed_ids"] else "")
            items = [QTableWidgetItem() for _ in values]
            for column, (item, value) in enumerate(zip(items, values)):
                item.setData(Qt.ItemDataRole.DisplayRole, value)
                self.table.setItem(row, column, item)
            rgb = (tuple(int(v * 255) for v in DISCARDED_RGBA[:3]) if category is None or resolved is None
                   else object_colour(instance_id) if self.view.by_object else category_colour(category))  # as drawn
            items[0].setData(Qt.ItemDataRole.DecorationRole, QColor(*rgb))  # stays visible when selected
        self.table.setSortingEnabled(True)
        self.legend.setText(object_legend_html(data["classes"], table) if self.view.by_object
                            else legend_html(data["classes"], table))
        self._filling = False
        self.select(self.view.selected)

    def selected_id(self) -> int:
        rows = {index.row() for index in self.table.selectedIndexes()}
        item = self.table.item(min(rows), 0) if rows else None
        return int(item.data(Qt.ItemDataRole.DisplayRole)) if item is not None else 0

    def select(self, instance_id: int) -> None:
        """Select the row of ``instance_id`` (0: none) without selecting the object again."""
        self._filling = True
        try:
            self.table.clearSelection()
            for row in range(self.table.rowCount()):
                item = self.table.item(row, 0)
                if item is not None and item.data(Qt.ItemDataRole.DisplayRole) == instance_id:
                    self.table.selectRow(row)
                    self.table.scrollToItem(item)
                    break
        finally:
            self._filling = False

    def _row_selected(self) -> None:
        if not self._filling:
            instance_id = self.selected_id()
            if instance_id != self.view.selected:
                self.view.select_object(instance_id)
