// HTTP/1.1 syntax rules shared by everything that reads or writes a head (the upstream client,
// the tunnel request reader, the tunnel response writer): one definition of each.

/** Header names and methods are tokens (RFC 9110 tchar). */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Node's own rule for header values (and what latin1 writing can carry): no control characters
 * but tab, nothing above U+00FF (written as latin1 it would lose its high byte: U+010A is LF).
 */
export const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
