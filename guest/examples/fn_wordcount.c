/*
 * fn_wordcount: a function whose reply is "<lines> <words> <bytes>" for its
 * request body, counted as `wc` does in the C locale: lines are newline
 * characters, words are maximal runs of bytes other than ASCII white space
 * (space, \t, \n, \v, \f, \r), bytes is the body's length. No newline, no
 * padding: "2 3 12".
 */
#include "tender.h"

static void wordcount(const struct tender_fn_request *req,
		      struct tender_fn_reply *rep)
{
	const uint8_t *p = req->body;
	size_t lines = 0, words = 0;
	bool in_word = false;

	for (size_t i = 0; i < req->len; i++) {
		uint8_t c = p[i];
		bool space = c == ' ' || (c >= '\t' && c <= '\r');

		if (c == '\n')
			lines++;
		if (space)
			in_word = false;
		else if (!in_word) {
			in_word = true;
			words++;
		}
	}
	int n = snprintf((char *)rep->body, rep->cap, "%zu %zu %zu", lines,
			 words, req->len);
	rep->len = (size_t)n;
}

int main(void)
{
	tender_fn_serve(wordcount);
}
