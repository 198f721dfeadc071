"""The page's views beyond the figures of a run: the instruments, the depth and step-size sweep, the paper's
dictionary, and the lecture's panels (scenario header, presentation styling, export and import)."""
