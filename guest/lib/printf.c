/*
 * printf.c: formatted output for guests.
 *
 * One formatter writes into a "sink": a buffer that either truncates
 * (snprintf) or is flushed to the console when it fills up (printf).
 */
#include "tender.h"

struct sink {
	char *buf;
	size_t cap;   /* bytes buf may hold */
	size_t len;   /* bytes in buf */
	size_t total; /* bytes produced, including truncated ones */
	bool console; /* flush to the console instead of truncating */
};

static void sink_flush(struct sink *s)
{
	if (s->console && s->len > 0)
		tender_console_write(s->buf, s->len);
	s->len = 0;
}

static void emit(struct sink *s, const char *p, size_t n)
{
	s->total += n;
	while (n > 0) {
		if (s->len == s->cap) {
			if (!s->console)
				return; /* truncate */
			sink_flush(s);
		}
		size_t room = s->cap - s->len;
		size_t k = n < room ? n : room;
		memcpy(s->buf + s->len, p, k);
		s->len += k;
		p += k;
		n -= k;
	}
}

static void emit_repeat(struct sink *s, char c, size_t n)
{
	char chunk[32];
	size_t k = n < sizeof(chunk) ? n : sizeof(chunk);

	for (size_t i = 0; i < k; i++)
		chunk[i] = c;
	while (n > 0) {
		k = n < sizeof(chunk) ? n : sizeof(chunk);
		emit(s, chunk, k);
		n -= k;
	}
}

enum {
	F_LEFT = 1 << 0,  /* '-' */
	F_ZERO = 1 << 1,  /* '0' */
	F_PLUS = 1 << 2,  /* '+' */
	F_SPACE = 1 << 3, /* ' ' */
	F_ALT = 1 << 4,   /* '#' */
};

struct spec {
	unsigned flags;
	size_t width;
	int prec; /* -1: none */
};

/* emit_padded writes prefix, then zeros, then body, padded to the width. */
static void emit_padded(struct sink *s, const struct spec *sp,
			const char *prefix, size_t prefix_len, size_t zeros,
			const char *body, size_t body_len)
{
	size_t len = prefix_len + zeros + body_len;
	size_t pad = sp->width > len ? sp->width - len : 0;

	if (pad > 0 && !(sp->flags & F_LEFT)) {
		if (sp->flags & F_ZERO)
			zeros += pad;
		else
			emit_repeat(s, ' ', pad);
	}
	emit(s, prefix, prefix_len);
	emit_repeat(s, '0', zeros);
	emit(s, body, body_len);
	if (pad > 0 && (sp->flags & F_LEFT))
		emit_repeat(s, ' ', pad);
}

static void format_int(struct sink *s, struct spec *sp, char conv,
		       uint64_t magnitude, bool negative)
{
	char digits[24]; /* 22 octal digits at most */
	char *end = digits + sizeof(digits), *p = end;
	const char *alphabet =
		conv == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
	unsigned base = conv == 'o' ? 8 : (conv == 'x' || conv == 'X' ||
					   conv == 'p')
						  ? 16
						  : 10;
	char prefix[2];
	size_t prefix_len = 0;

	if (sp->prec >= 0)
		sp->flags &= ~(unsigned)F_ZERO;
	if (sp->flags & F_LEFT)
		sp->flags &= ~(unsigned)F_ZERO;

	for (uint64_t v = magnitude; v != 0; v /= base)
		*--p = alphabet[v % base];
	if (magnitude == 0 && sp->prec != 0)
		*--p = '0';
	size_t ndigits = (size_t)(end - p);
	size_t zeros = sp->prec > 0 && (size_t)sp->prec > ndigits
			       ? (size_t)sp->prec - ndigits
			       : 0;

	if (conv == 'd' || conv == 'i') {
		if (negative)
			prefix[prefix_len++] = '-';
		else if (sp->flags & F_PLUS)
			prefix[prefix_len++] = '+';
		else if (sp->flags & F_SPACE)
			prefix[prefix_len++] = ' ';
	} else if (conv == 'p' || ((sp->flags & F_ALT) && magnitude != 0 &&
				   (conv == 'x' || conv == 'X'))) {
		prefix[prefix_len++] = '0';
		prefix[prefix_len++] = conv == 'X' ? 'X' : 'x';
	} else if (conv == 'o' && (sp->flags & F_ALT) && zeros == 0 &&
		   (ndigits == 0 || *p != '0')) {
		zeros = 1;
	}
	emit_padded(s, sp, prefix, prefix_len, zeros, p, ndigits);
}

static void format_str(struct sink *s, struct spec *sp, const char *str)
{
	size_t n = 0;

	if (str == NULL)
		str = sp->prec < 0 || sp->prec >= 6 ? "(null)" : "";
	if (sp->prec >= 0) {
		while (n < (size_t)sp->prec && str[n] != '\0')
			n++;
	} else {
		n = strlen(str);
	}
	sp->flags &= ~(unsigned)F_ZERO;
	emit_padded(s, sp, NULL, 0, 0, str, n);
}

enum length { L_INT, L_CHAR, L_SHORT, L_LONG, L_LLONG, L_SIZE, L_MAX, L_PTRDIFF };

static int format(struct sink *s, const char *fmt, va_list ap)
{
	const char *p = fmt;

	while (*p != '\0') {
		if (*p != '%') {
			const char *q = p;
			while (*q != '\0' && *q != '%')
				q++;
			emit(s, p, (size_t)(q - p));
			p = q;
			continue;
		}
		const char *start = p++;
		struct spec sp = {.flags = 0, .width = 0, .prec = -1};

		for (;; p++) {
			if (*p == '-')
				sp.flags |= F_LEFT;
			else if (*p == '0')
				sp.flags |= F_ZERO;
			else if (*p == '+')
				sp.flags |= F_PLUS;
			else if (*p == ' ')
				sp.flags |= F_SPACE;
			else if (*p == '#')
				sp.flags |= F_ALT;
			else
				break;
		}
		if (*p == '*') {
			int w = va_arg(ap, int);
			p++;
			if (w < 0) {
				sp.flags |= F_LEFT;
				sp.width = -(size_t)w;
			} else {
				sp.width = (size_t)w;
			}
		} else {
			while (*p >= '0' && *p <= '9') {
				if (sp.width < 100000000)
					sp.width = sp.width * 10 +
						   (size_t)(*p - '0');
				p++;
			}
		}
		if (*p == '.') {
			p++;
			sp.prec = 0;
			if (*p == '*') {
				int pr = va_arg(ap, int);
				p++;
				sp.prec = pr < 0 ? -1 : pr;
			} else {
				while (*p >= '0' && *p <= '9') {
					if (sp.prec < 100000000)
						sp.prec = sp.prec * 10 +
							  (*p - '0');
					p++;
				}
			}
		}

		enum length len = L_INT;
		switch (*p) {
		case 'h':
			p++;
			len = L_SHORT;
			if (*p == 'h') {
				p++;
				len = L_CHAR;
			}
			break;
		case 'l':
			p++;
			len = L_LONG;
			if (*p == 'l') {
				p++;
				len = L_LLONG;
			}
			break;
		case 'z':
			p++;
			len = L_SIZE;
			break;
		case 'j':
			p++;
			len = L_MAX;
			break;
		case 't':
			p++;
			len = L_PTRDIFF;
			break;
		default:
			break;
		}

		char conv = *p;
		if (conv == '\0') { /* dangling '%': print it as is */
			emit(s, start, (size_t)(p - start));
			break;
		}
		p++;
		switch (conv) {
		case 'd':
		case 'i': {
			int64_t v;
			switch (len) {
			case L_CHAR:
				v = (signed char)va_arg(ap, int);
				break;
			case L_SHORT:
				v = (short)va_arg(ap, int);
				break;
			case L_LONG:
				v = va_arg(ap, long);
				break;
			case L_LLONG:
				v = va_arg(ap, long long);
				break;
			case L_SIZE:
			case L_PTRDIFF:
				v = va_arg(ap, ptrdiff_t);
				break;
			case L_MAX:
				v = va_arg(ap, intmax_t);
				break;
			default:
				v = va_arg(ap, int);
				break;
			}
			uint64_t m = v < 0 ? -(uint64_t)v : (uint64_t)v;
			format_int(s, &sp, conv, m, v < 0);
			break;
		}
		case 'u':
		case 'o':
		case 'x':
		case 'X': {
			uint64_t v;
			switch (len) {
			case L_CHAR:
				v = (unsigned char)va_arg(ap, unsigned);
				break;
			case L_SHORT:
				v = (unsigned short)va_arg(ap, unsigned);
				break;
			case L_LONG:
				v = va_arg(ap, unsigned long);
				break;
			case L_LLONG:
				v = va_arg(ap, unsigned long long);
				break;
			case L_SIZE:
			case L_PTRDIFF:
				v = va_arg(ap, size_t);
				break;
			case L_MAX:
				v = va_arg(ap, uintmax_t);
				break;
			default:
				v = va_arg(ap, unsigned);
				break;
			}
			format_int(s, &sp, conv, v, false);
			break;
		}
		case 'p': {
			void *ptr = va_arg(ap, void *);
			if (ptr == NULL) {
				sp.prec = -1;
				format_str(s, &sp, "(nil)");
			} else {
				sp.flags &= ~(unsigned)(F_PLUS | F_SPACE);
				format_int(s, &sp, 'p', (uintptr_t)ptr, false);
			}
			break;
		}
		case 'c': {
			char c = (char)va_arg(ap, int);
			sp.flags &= ~(unsigned)F_ZERO;
			emit_padded(s, &sp, NULL, 0, 0, &c, 1);
			break;
		}
		case 's':
			format_str(s, &sp, va_arg(ap, const char *));
			break;
		case '%':
			emit(s, "%", 1);
			break;
		default: /* unknown conversion: print it as is */
			emit(s, start, (size_t)(p - start));
			break;
		}
	}
	return s->total > 0x7fffffff ? 0x7fffffff : (int)s->total;
}

int vsnprintf(char *restrict buf, size_t size, const char *restrict fmt,
	      va_list ap)
{
	struct sink s = {
		.buf = buf,
		.cap = size > 0 ? size - 1 : 0,
		.len = 0,
		.total = 0,
		.console = false,
	};
	int n = format(&s, fmt, ap);

	if (size > 0)
		buf[s.len] = '\0';
	return n;
}

int snprintf(char *restrict buf, size_t size, const char *restrict fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

#define PRINTF_BUF 1024

int vprintf(const char *restrict fmt, va_list ap)
{
	char buf[PRINTF_BUF];
	struct sink s = {
		.buf = buf,
		.cap = sizeof(buf),
		.len = 0,
		.total = 0,
		.console = true,
	};
	int n = format(&s, fmt, ap);

	sink_flush(&s);
	return n;
}

int printf(const char *restrict fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

int puts(const char *s)
{
	return printf("%s\n", s);
}
