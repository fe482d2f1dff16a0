"""GET /ui: a small chat page for people who open the Space in a browser."""
