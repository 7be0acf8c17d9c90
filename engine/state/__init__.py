"""The project state: the folder on disk, the user's label state, review actions."""
