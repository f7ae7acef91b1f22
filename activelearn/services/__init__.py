"""The service layer: the only place that uses both activelearn.core and db."""
