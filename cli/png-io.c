#include "png-io.h"

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libpng reports errors through a longjmp; the message is kept here first. */
struct png_err {
    char *buf;
    size_t size;
};

static void
on_error(png_structp png, png_const_charp msg)
{
    struct png_err *e = png_get_error_ptr(png);
    if (e && e->buf && e->size)
        snprintf(e->buf, e->size, "%s", msg);
    png_longjmp(png, 1);
}

static void
on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign chunk warnings (e.g. bad iCCP) are ignored, like Pillow does */
}

bool
cli_png_read(const char *path, struct unclip_image *img, char *err, size_t err_size)
{
    memset(img, 0, sizeof *img);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, err_size, "%s: cannot open", path);
        return false;
    }
    unsigned char sig[8];
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(fp);
        snprintf(err, err_size, "%s: not a PNG file", path);
        return false;
    }
    char msg[256] = "";
    struct png_err pe = {msg, sizeof msg};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &pe, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        fclose(fp);
        snprintf(err, err_size, "%s: out of memory", path);
        return false;
    }
    /* volatile: modified between setjmp and a possible longjmp */
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        snprintf(err, err_size, "%s: %s", path, msg[0] ? msg : "cannot decode");
        return false;
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    /* Refuse absurd sizes before allocating (decompression bombs). */
    png_set_user_limits(png, 65535, 65535);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);

    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (depth == 16)
        png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((channels != 3 && channels != 4) || rowbytes != (size_t)w * (size_t)channels) {
        snprintf(msg, sizeof msg, "unexpected layout after conversion (%d channels)", channels);
        png_longjmp(png, 1);
    }
    pixels = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) {
        snprintf(msg, sizeof msg, "out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = pixels + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    free(rows);

    img->width = (int32_t)w;
    img->height = (int32_t)h;
    img->channels = channels;
    img->stride = (int32_t)rowbytes;
    img->pixels = pixels;
    return true;
}

bool
cli_png_write(const char *path, const struct unclip_image *img, char *err, size_t err_size)
{
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 || img->channels < 1 ||
        img->channels > 4 || img->stride < img->width * img->channels) {
        snprintf(err, err_size, "%s: invalid image", path);
        return false;
    }
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        snprintf(err, err_size, "%s: cannot create", path);
        return false;
    }
    char msg[256] = "";
    struct png_err pe = {msg, sizeof msg};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &pe, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        fclose(fp);
        snprintf(err, err_size, "%s: out of memory", path);
        return false;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        snprintf(err, err_size, "%s: %s", path, msg[0] ? msg : "cannot encode");
        return false;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 types[img->channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int32_t y = 0; y < img->height; y++)
        png_write_row(png, img->pixels + (size_t)y * (size_t)img->stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(fp) != 0) {
        snprintf(err, err_size, "%s: write failed", path);
        return false;
    }
    return true;
}
