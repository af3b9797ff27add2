"""What every part of central stands on: settings, the database, security machinery."""
