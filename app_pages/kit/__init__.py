"""The page kit: what every page family shares, so a page is its title, one paragraph,
`controls`, `obtain` and its charts.

- `controls`: widgets for any settings class, bound to the link, and the one callback that sets
  them (presets, fixes, clicks).
- `runs`: the run store, a result with progress or one clear error, notices and downloads.
- `lessons`: preset buttons and the lesson box with its claims.
- `charts`: drawing (and caching) Altair charts.
- `diagnosis`: the headline's flat share and the gradient doctor's box.
"""
