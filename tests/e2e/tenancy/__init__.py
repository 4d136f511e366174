"""Named API keys: scopes, channel prefixes, publish rates."""
