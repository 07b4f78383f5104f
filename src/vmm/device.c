/* The VM's device registry: devices by stable id (section tag + instance) in creation order,
 * which is the order they are saved, quiesced and (reversed) destroyed in. */
#include "vmm/device.h"

#include <errno.h>

#include "lib/clock.h"
#include "lib/log.h"

static uint32_t device_next_instance(const struct device_registry *r,
				     const struct device_ops *ops)
{
	uint32_t n = 0;
	for (unsigned i = 0; i < r->n; i++)
		if (ops->tag ? r->devs[i].ops->tag == ops->tag : r->devs[i].ops == ops)
			n++;
	return n;
}

static struct device *device_enter(struct device_registry *r, const struct device_ops *ops,
				   unsigned group)
{
	if (r->n == DEVICE_MAX)
		return NULL;
	struct device *d = &r->devs[r->n];
	*d = (struct device){ ops, NULL, device_next_instance(r, ops), group };
	r->n++;
	return d;
}

int device_realize(struct device_registry *r, const struct device_ops *ops,
		   const struct device_ctx *ctx, const void *arg)
{
	/* Entered first, so that the parts it registers follow it (loaded after it). */
	unsigned at = r->n;
	struct device *d = device_enter(r, ops, at);
	if (!d) {
		log_error("cannot create the %s: a VM has room for %u devices", ops->name,
			  DEVICE_MAX);
		return -ENOSPC;
	}
	r->realizing = at;
	void *state = ops->realize(ctx, arg);
	if (!state) {
		/* Parts register last, so none did; the failed entry is the last one. */
		r->n = at;
		return -EINVAL;
	}
	r->devs[at].state = state;
	return 0;
}

int device_register(struct device_registry *r, const struct device_ops *ops, void *state)
{
	struct device *d = device_enter(r, ops, r->realizing);
	if (!d)
		return -ENOSPC;
	d->state = state;
	return 0;
}

void *device_find(const struct device_registry *r, const struct device_ops *ops, uint32_t i)
{
	for (unsigned k = 0; k < r->n; k++)
		if (r->devs[k].ops == ops && r->devs[k].instance == i)
			return r->devs[k].state;
	return NULL;
}

struct device *device_find_section(struct device_registry *r, uint32_t tag, uint32_t instance)
{
	for (unsigned k = 0; tag && k < r->n; k++)
		if (r->devs[k].ops->tag == tag && r->devs[k].instance == instance)
			return &r->devs[k];
	return NULL;
}

void device_registry_reset(struct device_registry *r)
{
	for (unsigned k = 0; k < r->n; k++)
		if (r->devs[k].ops->reset)
			r->devs[k].ops->reset(r->devs[k].state);
}

void device_registry_quiesce(struct device_registry *r)
{
	for (unsigned k = 0; k < r->n; k++)
		if (r->devs[k].ops->quiesce)
			r->devs[k].ops->quiesce(r->devs[k].state);
}

void device_registry_resume(struct device_registry *r)
{
	for (unsigned k = r->n; k-- > 0;)
		if (r->devs[k].ops->resume)
			r->devs[k].ops->resume(r->devs[k].state);
}

void device_registry_destroy(struct device_registry *r)
{
	for (unsigned k = r->n; k-- > 0;)
		if (r->devs[k].ops->destroy)
			r->devs[k].ops->destroy(r->devs[k].state);
	r->n = 0;
}

uint64_t guest_clock_ns(const struct guest_clock *c)
{
	return c->now_ns ? c->now_ns(c->opaque) : clock_mono_ns();
}
