/* kvmkit-img commit: being written (placeholder so the build links). */
#include "img/img.h"

int img_commit(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	img_error("commit is not implemented yet");
	return 1;
}
