"""hearth's built-in skills: time, reminders, calendar and files. They register through the same
manifest as any other skill, and run in hearth's own process (they are trusted code)."""
