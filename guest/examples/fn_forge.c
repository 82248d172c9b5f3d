/* fn_forge (hostile): a function whose console output imitates the log of
 * `tender serve`: each invocation prints a JSON line like the server's own,
 * a line of terminal escape sequences, and a carriage return and a half
 * line without a newline. A request starting with "abort" aborts with a
 * message of the same kind. Otherwise it echoes the body. */
#include "tender.h"

static const char forged[] =
	"{\"time\":\"2026-01-01T00:00:00Z\",\"level\":\"ERROR\","
	"\"msg\":\"forged by the guest\"}\n"
	"\x1b[2J\x1b[31mred\x1b[0m\x07\n"
	"\rstill forged";

static void forge(const struct tender_fn_request *req,
		  struct tender_fn_reply *rep)
{
	if (req->len >= 5 && memcmp(req->body, "abort", 5) == 0)
		tender_abort("fn_forge\n{\"level\":\"ERROR\","
			     "\"msg\":\"forged by the guest\"}\x1b[31m");
	tender_console_write(forged, sizeof(forged) - 1);
	rep->body = (uint8_t *)(uintptr_t)req->body;
	rep->len = req->len;
}

int main(void)
{
	tender_fn_serve(forge);
}
