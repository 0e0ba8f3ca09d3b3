// Results: see DESIGN.md.
