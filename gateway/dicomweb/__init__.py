"""DICOMweb (PS3.18) under /dicomweb."""
