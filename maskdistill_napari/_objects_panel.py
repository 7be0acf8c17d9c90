"""The objects of the image on screen: a table (id, category, score, area, reviewed) linked to the canvas
(selecting a row selects the mask, clicking a mask selects its row), a colour-by toggle (category or object)
and a legend of the category names with their colours. Reads only what ProjectView already holds: no engine
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

from ._layers import category_colour, legend_html, object_colour

COLUMNS = ("id", "category", "score", "area", "reviewed")
COLOUR_MODES = ("category", "object")


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
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        self.colour_by = QComboBox()
        self.colour_by.addItems(COLOUR_MODES)
        self.colour_by.setToolTip("Colour masks by their category, or each object apart (touching objects of one "
                                  "category stay distinguishable).")
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        form = QFormLayout()
        form.addRow("Colour by", self.colour_by)
        form.addRow("Legend", self.legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Objects of this image:"))
        layout.addWidget(self.table, 1)
        layout.addLayout(form)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.colour_by.currentTextChanged.connect(lambda mode: self.view.set_colour_by_object(mode == "object"))
        view.objects_changed.connect(self.fill)
        view.image_shown.connect(lambda _: self.fill())
        view.object_selected.connect(self.select)

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
            name = category.name if category is not None else f"category {raw}"
            name += " (discarded)" if resolved is None else ""
            values = (instance_id, name, round(float(data["scores"].get(instance_id, 1.0)), 3),
                      int(data.get("areas", {}).get(instance_id, 0)),
                      "yes" if instance_id in data["reviewed_ids"] else "")
            items = [QTableWidgetItem() for _ in values]
            for column, (item, value) in enumerate(zip(items, values)):
                item.setData(Qt.ItemDataRole.DisplayRole, value)
                self.table.setItem(row, column, item)
            rgb = (object_colour(instance_id) if self.view.by_object or category is None or resolved is None
                   else category_colour(category))
            items[0].setData(Qt.ItemDataRole.DecorationRole, QColor(*rgb))  # stays visible when selected
        self.table.setSortingEnabled(True)
        self.legend.setText(legend_html(data["classes"], table))
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
