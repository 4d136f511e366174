"""``serve --workers N``: one port, supervision, metrics summed over the workers."""
