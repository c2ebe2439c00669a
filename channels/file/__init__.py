"""File connector: outbound writes one file per record."""
