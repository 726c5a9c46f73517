"""The searchable index: patients, studies, series and instances in SQL."""
