// segd CLI (see DESIGN.md).
print("segd")
