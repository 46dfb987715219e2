"""The page's tabs, one module each, plus the helpers they share (common.py); layout and event wiring only."""
