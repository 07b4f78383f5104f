/* Embeds a guest's 64-bit ring-3 code (a flat binary linked at USER_CODE_BASE; see user.h) as
 * user_blob..user_blob_end for user_init to copy. USER_BLOB is its path, defined on the command
 * line by meson.build. */
    .section .rodata
    .align 16
    .global user_blob
user_blob:
    .incbin USER_BLOB
    .global user_blob_end
user_blob_end:

    .section .note.GNU-stack, "", @progbits
