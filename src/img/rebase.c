/* kvmkit-img rebase: being written (placeholder so the build links). */
#include "img/img.h"

int img_rebase(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	img_error("rebase is not implemented yet");
	return 1;
}
