// Tensor: see DESIGN.md.
