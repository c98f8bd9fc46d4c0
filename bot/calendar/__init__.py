"""The weekday theme calendar: schedules, holidays, occurrences and group expressions."""
