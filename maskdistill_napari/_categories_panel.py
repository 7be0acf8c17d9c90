"""Categories review: the table of pseudo-classes (id, name, masks, colour, status), a gallery of each
category's representative masks, and the category operations of ``engine.api``. Every change is saved
to the project by the engine and applies to all images at once; the layers are then recoloured."""
from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QImage, QPixmap
from qtpy.QtWidgets import (
    QColorDialog,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from . import _engine_calls as engine_calls
from ._gallery import category_sizes, representative_crops
from ._layers import category_colour, category_table

COLUMNS = ("id", "name", "masks", "colour", "status")


class CategoriesPanel(QWidget):
    """Shows ``view.table`` and calls engine.api's category operations on the selected categories."""

    def __init__(self, view, tasks, parent=None):
        super().__init__(parent)
        self.view, self.tasks = view, tasks
        self.sizes: dict = {}
        self.outlined: dict = {}  # the views' overlapping objects per category, exported beside the masks
        self._filling = False
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        rows_header, header = self.table.verticalHeader(), self.table.horizontalHeader()
        assert rows_header is not None and header is not None  # a QTableWidget always has both
        rows_header.setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        header.setSectionResizeMode(QHeaderView.ResizeToContents)  # the status column is never cut off
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.itemChanged.connect(self._name_edited)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.gallery = QHBoxLayout()
        self.gallery_labels = [QLabel() for _ in range(4)]
        for label in self.gallery_labels:
            label.setFixedSize(100, 100)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.gallery.addWidget(label)

        self.name = QLineEdit()
        self.name.setPlaceholderText("new name")
        self.merge_into = QComboBox()
        self.parts = QSpinBox()
        self.parts.setRange(2, 20)
        self.parts.setValue(2)
        self.discard_mode = QComboBox()
        self.discard_mode.addItems(["background", "ignore"])
        self.buttons = {text: QPushButton(text) for text in
                        ("Rename", "Merge selected into", "Split into", "Discard as", "Restore", "Recolour…")}
        grid = QGridLayout()
        rows = [("Rename", self.name), ("Merge selected into", self.merge_into), ("Split into", self.parts),
                ("Discard as", self.discard_mode)]
        for row, (text, field) in enumerate(rows):
            grid.addWidget(self.buttons[text], row, 0)
            grid.addWidget(field, row, 1)
        grid.addWidget(self.buttons["Restore"], len(rows), 0)
        grid.addWidget(self.buttons["Recolour…"], len(rows), 1)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(QLabel("Representative masks of the selected category:"))
        layout.addLayout(self.gallery)
        layout.addLayout(grid)
        layout.addWidget(self.status)
        handlers = {"Rename": self.rename, "Merge selected into": self.merge, "Split into": self.split,
                    "Discard as": self.discard, "Restore": self.restore, "Recolour…": self.recolour}
        for text, handler in handlers.items():
            self.buttons[text].clicked.connect(handler)

    # -- table -------------------------------------------------------------------------------
    def refresh(self, reread: bool = True) -> None:
        """Re-read the category table (``reread``: False when the view has just read it) and the mask counts
        (in a worker) and redraw."""
        if self.view.project_dir is None:
            return
        if reread:  # the label state is read in the queue: on a large project it is not instant
            self.tasks.submit(category_table, self.view.project_dir, self.view.clusters, on_done=self._got_table,
                              on_error=lambda message: self.status.setText(f"Reading the categories failed: {message}"))
        else:
            self._fill()
        self.tasks.submit(category_sizes, self.view.project_dir, on_done=self._got_sizes,
                          on_error=lambda message: self.status.setText(f"Counting the masks failed: {message}"))

    def _got_table(self, table) -> None:
        self.view.set_category_table(table)
        self._fill()

    def _got_sizes(self, sizes: tuple) -> None:
        self.sizes, self.outlined = sizes
        self._fill()

    def _fill(self) -> None:
        selected = self.selected_ids()
        categories = self.view.table.categories
        self._filling = True
        self.table.setRowCount(len(categories))
        for row, category in enumerate(categories):
            status = category.status
            masks = str(self.sizes.get(category.id, 0))
            if self.outlined.get(category.id):
                masks += f" + {self.outlined[category.id]} outlined"
            values = (str(category.id), category.name, masks, "", status)
            items = [QTableWidgetItem(value) for value in values]
            for column, item in enumerate(items):
                if column != 1:
                    # PyQt5's stubs type ~flag as int; Qt takes it (and PyQt6's stubs agree)
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)  # type: ignore[arg-type]
                self.table.setItem(row, column, item)
            # a decoration, not a background: it stays visible on a selected row
            items[3].setData(Qt.ItemDataRole.DecorationRole, QColor(*category_colour(category)))
            items[4].setToolTip(status)
            if category.id in selected:
                self.table.selectRow(row)
        chosen = self.merge_into.currentData()  # the merge target stays chosen across actions
        self.merge_into.clear()
        for category in categories:
            self.merge_into.addItem(f"{category.id}: {category.name}", category.id)
        if chosen is not None and self.merge_into.findData(chosen) >= 0:
            self.merge_into.setCurrentIndex(self.merge_into.findData(chosen))
        self._filling = False

    def _row_category_id(self, row: int) -> int | None:
        """The category id shown in ``row``; None while the table is being filled (no id item yet)."""
        item = self.table.item(row, 0)
        return int(item.text()) if item is not None else None

    def selected_ids(self) -> list:
        rows = sorted({index.row() for index in self.table.selectedIndexes()})
        ids = [self._row_category_id(row) for row in rows]
        return [category_id for category_id in ids if category_id is not None]

    def select(self, *category_ids) -> None:
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QTableWidget.MultiSelection)
        for row in range(self.table.rowCount()):
            if self._row_category_id(row) in category_ids:
                self.table.selectRow(row)
        self.table.setSelectionMode(mode)

    def current_category(self):
        """Category id for label ids the user paints: the first selected row, if any."""
        ids = self.selected_ids()
        return ids[0] if ids else None

    def _selection_changed(self) -> None:
        if self._filling:
            return
        self.view.update_appearance()  # the colour of new labels follows the selection
        category_id = self.current_category()
        if category_id is None:
            return
        category = self.view.table.by_id()[category_id]
        self.name.setText(category.name)
        self.tasks.submit(representative_crops, self.view.project_dir, category_id, category_colour(category),
                          on_done=self._show_gallery,
                          on_error=lambda message: self.status.setText(f"The gallery failed: {message}"))

    def _show_gallery(self, crops: list) -> None:
        for label, crop in zip(self.gallery_labels, crops + [None] * len(self.gallery_labels)):
            if crop is None:
                label.clear()
                continue
            image = QImage(crop.data, crop.shape[1], crop.shape[0], crop.strides[0], QImage.Format_RGB888)
            label.setPixmap(QPixmap.fromImage(image.copy()))

    # -- operations --------------------------------------------------------------------------
    def _apply(self, action: str, description: str, operation, *args, reload: bool = False) -> None:
        """``operation(project, *args)`` (one of _engine_calls' category functions) in the queue, after the
        pending edits are saved; ``action`` says what was asked ("rename 'cat' to 'dog'"), ``description`` what
        was done ("Renamed 'cat' to 'dog'.")."""
        if self.view.project_dir is None:
            self.status.setText("Open or run a project first.")
            return
        self.view.save()
        self.tasks.submit(operation, self.view.project_dir, *args,
                          on_done=lambda _: self._done(description, reload),
                          on_error=lambda message: self._refused(action, message))

    def _refused(self, action: str, message: str) -> None:
        """Say that nothing was done, and show the table as it is again (an in-place rename the project refused
        would otherwise stay in its cell)."""
        self.status.setText(f"Could not {action}: {message}")
        self.refresh()

    def _done(self, description: str, reload: bool) -> None:
        self.status.setText(description)
        if reload:  # the masks' categories changed, not just the table: cached images are stale
            self.view.reload()
        self.refresh()

    def _named(self, *category_ids) -> str:
        """Categories as a person reads them: their names in quotes ('cat', 'dog'), the id where none is known."""
        by_id = self.view.table.by_id() if self.view.table is not None else {}
        return ", ".join(f"'{by_id[c].name}'" if c in by_id else f"category {c}" for c in category_ids)

    def _one_selected(self):
        ids = self.selected_ids()
        if len(ids) != 1:
            self.status.setText("Select one category first.")
            return None
        return ids[0]

    def _name_edited(self, item) -> None:
        category_id = self._row_category_id(item.row())
        if not self._filling and item.column() == 1 and category_id is not None:
            self._rename(category_id, item.text())

    def rename(self) -> None:
        category_id = self._one_selected()
        if category_id is not None:
            self._rename(category_id, self.name.text())

    def _rename(self, category_id: int, name: str) -> None:
        old = self._named(category_id)  # the table's name until the project says otherwise
        self._apply(f"rename {old} to '{name}'", f"Renamed {old} to '{name}'.", engine_calls.rename_category,
                    category_id, name)

    def merge(self) -> None:
        into, ids = self.merge_into.currentData(), self.selected_ids()
        ids = [i for i in ids if i != into]
        if into is None or not ids:
            self.status.setText("Select the categories to merge and the one to merge them into.")
            return
        self._apply(f"merge {self._named(*ids)} into {self._named(into)}",
                    f"Merged {self._named(*ids)} into {self._named(into)}.", engine_calls.merge_categories, ids, into)

    def split(self) -> None:
        category_id = self._one_selected()
        if category_id is not None:
            self._apply(f"split {self._named(category_id)} into {self.parts.value()}",
                        f"Split {self._named(category_id)} into {self.parts.value()}.", engine_calls.split_category,
                        category_id, self.parts.value(), reload=True)

    def discard(self) -> None:
        for category_id in self.selected_ids():
            self._apply(f"discard {self._named(category_id)}",
                        f"Discarded {self._named(category_id)} ({self.discard_mode.currentText()}).",
                        engine_calls.discard_category, category_id, self.discard_mode.currentText())

    def restore(self) -> None:
        for category_id in self.selected_ids():
            self._apply(f"restore {self._named(category_id)}", f"Restored {self._named(category_id)}.",
                        engine_calls.restore_category, category_id)

    def recolour(self) -> None:
        category_id = self._one_selected()
        if category_id is None:
            return
        colour = QColorDialog.getColor(QColor(*category_colour(self.view.table.by_id()[category_id])), self)
        if colour.isValid():
            self._apply(f"recolour {self._named(category_id)}", f"Recoloured {self._named(category_id)}.",
                        engine_calls.recolour_category, category_id, (colour.red(), colour.green(), colour.blue()))
