/* Unit tests of the migration channels' error paths (src/migration/uri.c): a file: stream is
 * durable (the file and a new file's directory fsynced) before channel_close reports success,
 * and an exec: command that cannot be reaped is an error, not an uninitialised status. fsync is
 * wrapped at link time (-Wl,--wrap=fsync) to record and fail calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/uri.h"

int __real_fsync(int fd);

/* What fsync saw: the inode of each fd synced, in order; fail_with makes it fail instead. */
static struct stat synced[8];
static int nsynced, fail_with;

int __wrap_fsync(int fd)
{
	if (fail_with) {
		errno = fail_with;
		return -1;
	}
	if (nsynced < 8)
		fstat(fd, &synced[nsynced++]);
	return __real_fsync(fd);
}

static bool was_synced(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return false;
	for (int i = 0; i < nsynced; i++)
		if (synced[i].st_ino == st.st_ino && synced[i].st_dev == st.st_dev)
			return true;
	return false;
}

static char dir[64], file[96], uri[128];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/kvmkit-uri-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(file, sizeof(file), "%s/stream", dir);
	snprintf(uri, sizeof(uri), "file:%s", file);
	nsynced = fail_with = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(file);
	rmdir(dir);
	return 0;
}

static void write_stream(struct migration_channel *ch)
{
	char why[256] = "";
	assert_int_equal(channel_open(uri, true, ch, why, sizeof(why)), 0);
	assert_int_equal(write(ch->fd, "data", 4), 4);
}

/* A new file: it and its directory are fsynced before the close succeeds. */
static void test_file_new_is_durable(void **state)
{
	(void)state;
	struct migration_channel ch;
	char why[256] = "";
	write_stream(&ch);
	assert_int_equal(nsynced, 0);
	assert_int_equal(channel_close(&ch, why, sizeof(why)), 0);
	assert_true(was_synced(file));
	assert_true(was_synced(dir));
}

/* An existing file is truncated and fsynced (its name is already durable). */
static void test_file_existing_is_durable(void **state)
{
	(void)state;
	FILE *f = fopen(file, "w");
	assert_non_null(f);
	fputs("older and longer content", f);
	fclose(f);
	struct migration_channel ch;
	char why[256] = "";
	write_stream(&ch);
	assert_int_equal(channel_close(&ch, why, sizeof(why)), 0);
	assert_true(was_synced(file));
	struct stat st;
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, 4);
}

/* A failed fsync fails the close with a sentence: the migration cannot report completed. */
static void test_file_fsync_failure(void **state)
{
	(void)state;
	struct migration_channel ch;
	char why[256] = "";
	write_stream(&ch);
	fail_with = EIO;
	assert_int_equal(channel_close(&ch, why, sizeof(why)), -EIO);
	assert_non_null(strstr(why, "durable"));
	assert_int_equal(ch.fd, -1);
	assert_int_equal(ch.dir_fd, -1);
}

/* An aborted file stream (a failed or cancelled migration) is not synced. */
static void test_file_abort_no_sync(void **state)
{
	(void)state;
	struct migration_channel ch;
	char why[256] = "";
	write_stream(&ch);
	channel_abort(&ch);
	channel_close(&ch, why, sizeof(why));
	assert_int_equal(nsynced, 0);
}

/* With SIGCHLD ignored the child is reaped by the kernel: waitpid fails with ECHILD, and that
 * is an error naming it (the status waitpid did not fill is never read). */
static void test_exec_unreapable(void **state)
{
	(void)state;
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	sigaction(SIGCHLD, &ign, &old);
	struct migration_channel ch;
	char why[256] = "";
	assert_int_equal(channel_open("exec:cat >/dev/null", true, &ch, why, sizeof(why)), 0);
	int r = channel_close(&ch, why, sizeof(why));
	sigaction(SIGCHLD, &old, NULL);
	assert_int_equal(r, -ECHILD);
	assert_non_null(strstr(why, "cannot learn how the migration command ended"));
}

/* The normal exec: paths still report the command's status. */
static void test_exec_status(void **state)
{
	(void)state;
	struct migration_channel ch;
	char why[256] = "";
	assert_int_equal(channel_open("exec:cat >/dev/null", true, &ch, why, sizeof(why)), 0);
	assert_int_equal(channel_close(&ch, why, sizeof(why)), 0);
	assert_int_equal(channel_open("exec:exit 3", true, &ch, why, sizeof(why)), 0);
	assert_int_equal(channel_close(&ch, why, sizeof(why)), -EIO);
	assert_non_null(strstr(why, "exited with status 3"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_new_is_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_existing_is_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_fsync_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_abort_no_sync, setup, teardown),
		cmocka_unit_test(test_exec_unreapable),
		cmocka_unit_test(test_exec_status),
	};
	return cmocka_run_group_tests_name("uri", tests, NULL, NULL);
}
