"""Shared pieces that know no domain: errors (one JSON shape), pagination and the API's exception
handler, audited write helpers, the live publish helper, admin and page helpers, settings helpers."""
