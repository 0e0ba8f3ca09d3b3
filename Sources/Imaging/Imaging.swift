// Imaging: see DESIGN.md.
