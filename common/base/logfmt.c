/*
 * logfmt.c - the fields of a log line (log.h): quoting in text, escaping in
 * JSON, and reading a `key=%conv ...` format one conversion at a time so
 * that each value can be typed and escaped on its own.
 *
 * Text quotes a value only when it must (empty, or holding a space, quote,
 * '=', backslash, control character or bytes that are not UTF-8), so that
 * the common line reads as plain key=value pairs. JSON escapes quotes,
 * backslashes and control characters and replaces bytes that are not UTF-8
 * with U+FFFD, so that every line is valid JSON (RFC 8259) whatever a peer
 * or a file name put in a value.
 */
#include "logfmt.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* Kept free at the end of the buffer for the close: `,"truncated":true}` and the newline. */
#define TAIL_RESERVE 24
#define ROOM (GDML_LOG_LINE_MAX - TAIL_RESERVE)

bool gdml_logfmt_put(gdml_log_line *l, const char *s, size_t n)
{
    if (l->truncated || l->len + n > ROOM)
        return false;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
    return true;
}

void gdml_logfmt_close(gdml_log_line *l)
{
    /* The reserve is always free: these bypass the bound on purpose. */
    const char *tail;
    if (l->format == GDML_LOG_JSON)
        tail = l->truncated ? ",\"truncated\":true}\n" : "}\n";
    else
        tail = l->truncated ? " truncated=true\n" : "\n";
    size_t n = strlen(tail);
    memcpy(l->buf + l->len, tail, n + 1);
    l->len += n;
}

/* Length of the valid UTF-8 sequence at s (at most avail bytes), 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    size_t n;
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0)
        n = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return n;
}

static bool text_needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return true;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            return true;
        size_t u = utf8_len((const unsigned char *)s + i, n - i);
        if (u == 0)
            return true;
        i += u;
    }
    return false;
}

/* The escape of one character (or invalid byte) at s into out; returns its length. */
static size_t escape_one(gdml_log_format f, const unsigned char *s, size_t avail, char out[8],
                         size_t *consumed)
{
    unsigned char c = s[0];
    *consumed = 1;
    const char *simple = NULL;
    switch (c) {
    case '"': simple = "\\\""; break;
    case '\\': simple = "\\\\"; break;
    case '\n': simple = "\\n"; break;
    case '\r': simple = "\\r"; break;
    case '\t': simple = "\\t"; break;
    default: break;
    }
    if (simple) {
        memcpy(out, simple, 2);
        return 2;
    }
    if (c < 0x20 || c == 0x7f)
        return (size_t)snprintf(out, 8, f == GDML_LOG_JSON ? "\\u%04x" : "\\x%02x", c);
    size_t u = utf8_len(s, avail);
    if (u == 0) /* not UTF-8: JSON must not carry it; text shows the byte */
        return f == GDML_LOG_JSON ? (memcpy(out, "\\ufffd", 6), 6)
                                  : (size_t)snprintf(out, 8, "\\x%02x", c);
    memcpy(out, s, u);
    *consumed = u;
    return u;
}

/* Appends n bytes of s between quotes, escaped; cuts it (and marks the line) if it does not fit. */
static void put_quoted(gdml_log_line *l, const char *s, size_t n)
{
    gdml_logfmt_put(l, "\"", 1);
    for (size_t i = 0; i < n && !l->truncated;) {
        char esc[8];
        size_t used;
        size_t k = escape_one(l->format, (const unsigned char *)s + i, n - i, esc, &used);
        if (l->len + k + 1 > ROOM) { /* +1: the closing quote */
            l->truncated = true;
            break;
        }
        memcpy(l->buf + l->len, esc, k);
        l->len += k;
        i += used;
    }
    l->buf[l->len++] = '"'; /* room was kept for it */
    l->buf[l->len] = '\0';
}

typedef enum kind { KIND_STRING, KIND_NUMBER } kind;

/* A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    else
        return false;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == n;
}

/* Appends ` key=value` (text) or `,"key":value` (JSON). */
static void put_field(gdml_log_line *l, const char *key, size_t key_len, const char *v, size_t n,
                      kind k)
{
    if (l->truncated)
        return;
    size_t mark = l->len;
    bool ok;
    if (l->format == GDML_LOG_JSON) {
        ok = gdml_logfmt_put(l, ",", 1);
        if (ok) {
            put_quoted(l, key, key_len);
            ok = !l->truncated && gdml_logfmt_put(l, ":", 1);
        }
    } else {
        ok = gdml_logfmt_put(l, " ", 1) && gdml_logfmt_put(l, key, key_len) &&
             gdml_logfmt_put(l, "=", 1);
    }
    /* A field whose key does not fit is left out whole, never half-written. */
    if (!ok || l->len + 8 > ROOM) {
        l->len = mark;
        l->buf[mark] = '\0';
        l->truncated = true;
        return;
    }
    if (k == KIND_NUMBER) {
        while (n > 0 && (*v == ' ' || *v == '+')) /* width padding, the + flag */
            v++, n--;
        if (l->format == GDML_LOG_TEXT) {
            if (!gdml_logfmt_put(l, v, n))
                l->truncated = true;
            return;
        }
        if (json_number(v, n)) {
            if (!gdml_logfmt_put(l, v, n))
                l->truncated = true;
            return;
        }
        bool not_finite = memchr(v, 'n', n) || memchr(v, 'N', n); /* nan, inf */
        if (not_finite) {
            if (!gdml_logfmt_put(l, "null", 4))
                l->truncated = true;
            return;
        }
        /* Anything else (a zero-padded %05d, say) stays readable as a string. */
    }
    if (l->format == GDML_LOG_TEXT && !text_needs_quotes(v, n)) {
        if (!gdml_logfmt_put(l, v, n)) /* cut, still unquoted-safe: a prefix of a plain word */
            put_quoted(l, v, n);
        return;
    }
    put_quoted(l, v, n);
}

void gdml_log_str(gdml_log_line *l, const char *key, const char *value)
{
    if (!value)
        value = "(null)";
    put_field(l, key, strlen(key), value, strlen(value), KIND_STRING);
}

void gdml_log_int(gdml_log_line *l, const char *key, long long value)
{
    char v[32];
    int n = snprintf(v, sizeof v, "%lld", value);
    put_field(l, key, strlen(key), v, (size_t)n, KIND_NUMBER);
}

/*
 * One conversion of a fields format, e.g. "%.4f" or "%llu": its text (for
 * snprintf), length modifier and conversion character.
 */
typedef struct conv {
    char spec[24];
    char length[3];
    char type;
    int precision; /* -1 if none */
} conv;

/* Parses the conversion at p ('%' at p[0]); returns what follows it, or NULL if unsupported. */
static const char *parse_conv(const char *p, conv *c)
{
    const char *start = p++;
    while (*p && strchr("-+ #0", *p))
        p++;
    while (*p >= '0' && *p <= '9')
        p++;
    c->precision = -1;
    if (*p == '.') {
        c->precision = 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
            c->precision = c->precision * 10 + (*p - '0');
    }
    size_t nl = 0;
    while (*p && strchr("hlzjtL", *p) && nl < 2)
        c->length[nl++] = *p++;
    c->length[nl] = '\0';
    c->type = *p;
    if (!c->type || !strchr("diouxXfFeEgGaAcsp", c->type) || (size_t)(p + 1 - start) >= sizeof c->spec)
        return NULL; /* '*', %n, a stray %: not a format gdml uses */
    memcpy(c->spec, start, (size_t)(p + 1 - start));
    c->spec[p + 1 - start] = '\0';
    return p + 1;
}

#define IS(len) (strcmp(c->length, len) == 0)

/* Formats the next argument by c into out; returns its kind. */
static kind format_arg(const conv *c, va_list *ap, char *out, size_t cap)
{
    /* The spec is one printf conversion checked at the call site by the format attribute. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    switch (c->type) {
    case 'd':
    case 'i':
        if (IS("l"))
            snprintf(out, cap, c->spec, va_arg(*ap, long));
        else if (IS("ll"))
            snprintf(out, cap, c->spec, va_arg(*ap, long long));
        else if (IS("z"))
            snprintf(out, cap, c->spec, va_arg(*ap, ssize_t));
        else if (IS("j"))
            snprintf(out, cap, c->spec, va_arg(*ap, intmax_t));
        else if (IS("t"))
            snprintf(out, cap, c->spec, va_arg(*ap, ptrdiff_t));
        else
            snprintf(out, cap, c->spec, va_arg(*ap, int));
        return KIND_NUMBER;
    case 'o':
    case 'u':
    case 'x':
    case 'X':
        if (IS("l"))
            snprintf(out, cap, c->spec, va_arg(*ap, unsigned long));
        else if (IS("ll"))
            snprintf(out, cap, c->spec, va_arg(*ap, unsigned long long));
        else if (IS("z"))
            snprintf(out, cap, c->spec, va_arg(*ap, size_t));
        else if (IS("j"))
            snprintf(out, cap, c->spec, va_arg(*ap, uintmax_t));
        else if (IS("t"))
            snprintf(out, cap, c->spec, va_arg(*ap, ptrdiff_t));
        else
            snprintf(out, cap, c->spec, va_arg(*ap, unsigned));
        return c->type == 'u' ? KIND_NUMBER : KIND_STRING; /* hex and octal read as text */
    case 'c':
        snprintf(out, cap, c->spec, va_arg(*ap, int));
        return KIND_STRING;
    case 'p':
        snprintf(out, cap, c->spec, va_arg(*ap, void *));
        return KIND_STRING;
    default: /* the floating conversions */
        if (IS("L"))
            snprintf(out, cap, c->spec, va_arg(*ap, long double));
        else
            snprintf(out, cap, c->spec, va_arg(*ap, double));
        return KIND_NUMBER;
    }
#pragma GCC diagnostic pop
}

void gdml_log_vfields(gdml_log_line *l, const char *fields, va_list ap_in)
{
    va_list ap;
    va_copy(ap, ap_in);
    const char *p = fields;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t key_len = (size_t)(p - key);
        assert(*p == '=' && "a log field without '=': write key=%conv");
        if (*p != '=')
            continue; /* skip the stray word (a build without asserts) */
        p++;
        /* The value: literal text and at most one conversion, up to the next space. */
        char value[512];
        size_t n = 0;
        const char *str = NULL; /* a lone %s: used in place, so it is never cut at 512 */
        size_t str_len = 0;
        kind k = KIND_STRING;
        int parts = 0;
        while (*p && *p != ' ') {
            if (p[0] == '%' && p[1] == '%') {
                if (n < sizeof value - 1)
                    value[n++] = '%';
                p += 2;
                parts++;
                continue;
            }
            if (*p != '%') {
                if (n < sizeof value - 1)
                    value[n++] = *p;
                p++;
                parts++;
                continue;
            }
            conv c;
            const char *next = parse_conv(p, &c);
            assert(next && "a log field conversion gdml does not support");
            if (!next) {
                va_end(ap);
                return; /* the arguments can no longer be read safely */
            }
            p = next;
            if (c.type == 's') {
                const char *s = va_arg(ap, const char *);
                if (!s)
                    s = "(null)";
                size_t len = strlen(s);
                if (c.precision >= 0 && (size_t)c.precision < len)
                    len = (size_t)c.precision;
                str = s, str_len = len;
                size_t take = len < sizeof value - 1 - n ? len : sizeof value - 1 - n;
                memcpy(value + n, s, take);
                n += take;
                k = KIND_STRING;
            } else {
                int w = 0;
                if (n < sizeof value - 1) {
                    k = format_arg(&c, &ap, value + n, sizeof value - n);
                    w = (int)strlen(value + n);
                } else {
                    char scratch[8];
                    k = format_arg(&c, &ap, scratch, sizeof scratch);
                }
                n += (size_t)w;
            }
            parts++;
        }
        value[n] = '\0';
        if (parts == 1 && str)
            put_field(l, key, key_len, str, str_len, KIND_STRING);
        else
            put_field(l, key, key_len, value, n, parts == 1 ? k : KIND_STRING);
    }
    va_end(ap);
}

void gdml_log_fields(gdml_log_line *l, const char *fields, ...)
{
    va_list ap;
    va_start(ap, fields);
    gdml_log_vfields(l, fields, ap);
    va_end(ap);
}
