"""Pure DICOM helpers: no I/O."""
