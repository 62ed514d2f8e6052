"""The process the library runs in: devices and seeds (:mod:`.device`), the host allocator
(:mod:`.allocator`) and atomic file writes (:mod:`.atomic`)."""
