/*
 * string.c: the memory and string functions of the guest C library.
 *
 * The compiler may emit calls to memcpy, memmove, memset and memcmp on its
 * own, so these must exist. The copying and filling functions use the string
 * instructions (fast on CPUs with ERMS), which also keeps the compiler from
 * turning their loops back into calls to themselves.
 */
#include "tender.h"

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
	void *d = dst;

	__asm__ __volatile__("rep movsb"
			     : "+D"(d), "+S"(src), "+c"(n)
			     :
			     : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;

	if (d - s >= n) {
		/* dst is below src or the regions do not overlap: copying
		 * forwards never overwrites unread source bytes. */
		void *dp = dst;
		__asm__ __volatile__("rep movsb"
				     : "+D"(dp), "+S"(src), "+c"(n)
				     :
				     : "memory");
	} else {
		/* dst overlaps the tail of src: copy backwards. */
		void *dp = (char *)dst + n - 1;
		const void *sp = (const char *)src + n - 1;
		__asm__ __volatile__("std\n\trep movsb\n\tcld"
				     : "+D"(dp), "+S"(sp), "+c"(n)
				     :
				     : "memory");
	}
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	__asm__ __volatile__("rep stosb"
			     : "+D"(d), "+c"(n)
			     : "a"(c)
			     : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;

	for (size_t i = 0; i < n; i++) {
		if (p[i] != q[i])
			return p[i] < q[i] ? -1 : 1;
	}
	return 0;
}

size_t strlen(const char *s)
{
	const char *p = s;

	while (*p != '\0')
		p++;
	return (size_t)(p - s);
}

int strcmp(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;

	while (*p != '\0' && *p == *q) {
		p++;
		q++;
	}
	return (*p > *q) - (*p < *q);
}

int strncmp(const char *a, const char *b, size_t n)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;

	for (; n > 0; n--, p++, q++) {
		if (*p != *q)
			return (*p > *q) - (*p < *q);
		if (*p == '\0')
			break;
	}
	return 0;
}

char *strchr(const char *s, int c)
{
	char ch = (char)c;

	for (;; s++) {
		if (*s == ch)
			return (char *)s;
		if (*s == '\0')
			return NULL;
	}
}

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 10;
	return 99;
}

static bool is_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/*
 * parse_ulong is the common part of strtoul and strtol: it skips white space,
 * reads an optional sign and base prefix and accumulates the magnitude,
 * saturating at limit (and setting *overflow). *end is set past the last
 * digit, or to s when there is none.
 */
static unsigned long parse_ulong(const char *s, char **end, int base,
				 bool *negative, unsigned long limit,
				 bool *overflow)
{
	const char *p = s;
	unsigned long v = 0;
	bool any = false;

	*negative = false;
	*overflow = false;
	if (base < 0 || base == 1 || base > 36) {
		if (end != NULL)
			*end = (char *)s;
		return 0;
	}
	while (is_space(*p))
		p++;
	if (*p == '+' || *p == '-') {
		*negative = *p == '-';
		p++;
	}
	if ((base == 0 || base == 16) && p[0] == '0' &&
	    (p[1] == 'x' || p[1] == 'X') && digit_value(p[2]) < 16) {
		p += 2;
		base = 16;
	} else if (base == 0) {
		base = p[0] == '0' ? 8 : 10;
	}
	for (;; p++) {
		int d = digit_value(*p);
		if (d >= base)
			break;
		any = true;
		if (*overflow)
			continue;
		if (v > (limit - (unsigned long)d) / (unsigned long)base) {
			*overflow = true;
			v = limit;
		} else {
			v = v * (unsigned long)base + (unsigned long)d;
		}
	}
	if (end != NULL)
		*end = (char *)(any ? p : s);
	return any ? v : 0;
}

unsigned long strtoul(const char *restrict s, char **restrict end, int base)
{
	bool negative, overflow;
	unsigned long v =
		parse_ulong(s, end, base, &negative, ~0UL, &overflow);

	if (overflow)
		return ~0UL;
	return negative ? -v : v;
}

long strtol(const char *restrict s, char **restrict end, int base)
{
	bool negative, overflow;
	/* The magnitude of LONG_MIN is one more than LONG_MAX. */
	unsigned long max = ~0UL >> 1;
	unsigned long v = parse_ulong(s, end, base, &negative, max + 1,
				      &overflow);

	if (negative)
		return overflow || v == max + 1 ? (long)-max - 1 : -(long)v;
	return overflow || v > max ? (long)max : (long)v;
}

int atoi(const char *s)
{
	return (int)strtol(s, NULL, 10);
}
