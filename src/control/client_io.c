/* A control client's byte streams: input split into JSON texts with bounded size and nesting,
 * and output buffered (bounded) for a non-blocking socket. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/control_int.h"

static int json_stream_store(struct json_stream *s, char c)
{
	if (s->len == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		char *p = realloc(s->buf, cap);
		if (!p)
			return -ENOMEM;
		s->buf = p;
		s->cap = cap;
	}
	s->buf[s->len++] = c;
	return 0;
}

static void json_stream_reset(struct json_stream *s)
{
	s->len = 0;
	s->depth = 0;
	s->in_string = s->escape = false;
	/* A text that grew to the limit once does not keep its memory. */
	if (s->cap > 64 * 1024) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
}

/* Tracks strings and nesting; returns true when c ends the current text. */
static bool json_stream_track(struct json_stream *s, char c)
{
	if (s->in_string) {
		if (s->escape)
			s->escape = false;
		else if (c == '\\')
			s->escape = true;
		else if (c == '"')
			s->in_string = false;
		return false;
	}
	switch (c) {
	case '"':
		s->in_string = true;
		return false;
	case '{':
	case '[':
		s->depth++;
		return false;
	case '}':
	case ']':
		/* An unbalanced closer at the outermost level is a text of its own (an error). */
		return --s->depth <= 0;
	default:
		return false;
	}
}

void json_stream_feed(struct json_stream *s, const uint8_t *data, size_t n, json_stream_fn fn,
		      void *opaque)
{
	char why[96];
	for (size_t i = 0; i < n; i++) {
		char c = (char)data[i];
		if (data[i] == 0xff) {
			/* Never valid in UTF-8: QEMU's lexer drops what it had and starts over. */
			bool had = s->len > 0 || s->skipping;
			json_stream_reset(s);
			s->skipping = false;
			if (had)
				fn(opaque, NULL, 0, "JSON parse error, invalid byte 0xff");
			continue;
		}
		bool is_space = c == ' ' || c == '\t' || c == '\r' || c == '\n';
		if (s->skipping) {
			if (json_stream_track(s, c) || (s->depth == 0 && !s->in_string && is_space)) {
				json_stream_reset(s);
				s->skipping = false;
			}
			continue;
		}
		if (s->depth == 0 && !s->in_string && is_space) {
			if (s->len > 0) { /* a bare scalar ends here */
				fn(opaque, s->buf, s->len, NULL);
				json_stream_reset(s);
			}
			continue;
		}
		bool done = json_stream_track(s, c);
		if (s->len >= CONTROL_MAX_REQUEST || s->depth > CONTROL_MAX_NESTING) {
			snprintf(why, sizeof(why), s->depth > CONTROL_MAX_NESTING
				 ? "JSON parse error, nesting deeper than %u levels"
				 : "JSON parse error, request larger than %u bytes",
				 s->depth > CONTROL_MAX_NESTING ? CONTROL_MAX_NESTING : CONTROL_MAX_REQUEST);
			fn(opaque, NULL, 0, why);
			int depth = s->depth;
			bool in_string = s->in_string, escape = s->escape;
			json_stream_reset(s);
			if (!done) { /* drop the rest of this text as it arrives */
				s->depth = depth;
				s->in_string = in_string;
				s->escape = escape;
				s->skipping = true;
			}
			continue;
		}
		if (json_stream_store(s, c) < 0) {
			json_stream_reset(s);
			fn(opaque, NULL, 0, "JSON parse error, out of memory");
			continue;
		}
		if (done) {
			fn(opaque, s->buf, s->len, NULL);
			json_stream_reset(s);
		}
	}
}

void json_stream_free(struct json_stream *s)
{
	free(s->buf);
	memset(s, 0, sizeof(*s));
}

int outbuf_append(struct outbuf *o, const char *s, size_t n)
{
	if (o->len + n > CONTROL_MAX_OUTPUT)
		return -ENOBUFS;
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 1024;
		while (cap < o->len + n)
			cap *= 2;
		char *p = realloc(o->data, cap);
		if (!p)
			return -ENOBUFS;
		o->data = p;
		o->cap = cap;
	}
	memcpy(o->data + o->len, s, n);
	o->len += n;
	return 0;
}

int outbuf_printf(struct outbuf *o, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < sizeof(small))
		return outbuf_append(o, small, (size_t)n);
	char *big = malloc((size_t)n + 1);
	if (!big)
		return -ENOBUFS;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int r = outbuf_append(o, big, (size_t)n);
	free(big);
	return r;
}

int outbuf_flush(struct outbuf *o, int fd)
{
	while (o->len > 0) {
		ssize_t w = write(fd, o->data, o->len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		}
		memmove(o->data, o->data + w, o->len - (size_t)w);
		o->len -= (size_t)w;
	}
	if (o->cap > 64 * 1024) { /* give back what a burst of output took */
		free(o->data);
		o->data = NULL;
		o->cap = 0;
	}
	return 0;
}

void outbuf_free(struct outbuf *o)
{
	free(o->data);
	memset(o, 0, sizeof(*o));
}
