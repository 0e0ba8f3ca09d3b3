// Pipeline: see DESIGN.md.
