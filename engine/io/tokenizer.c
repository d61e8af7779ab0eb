/* CLIP byte-level BPE tokenizer (contract in tokenizer.h).
 *
 * The reference tokenizes the whole prompt and then truncates; here the prompt is streamed
 * word by word and counting stops after UNCLIP_TOKENIZER_COUNT_CAP tokens, so the result is
 * the same for every prompt the cap does not cut and the work stays bounded for huge ones.
 * Streaming is exact because no step of the reference crosses a word boundary: the special
 * literals split the raw text, the cleanup only drops or spaces single code points, NFC never
 * composes across a space, and neither the lower-casing (per whitespace word in BERT's
 * BasicTokenizer) nor the pre-token regex (which never matches whitespace) looks past one. */
#include "io/tokenizer.h"

#include "core/alloc.h"
#include "io/json.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#define MAX_CONTENT (UNCLIP_TOKENIZER_MAX_IDS - 2)
/* CLIPTokenizer reads at most this many merges (the vocab size of OpenAI's BPE file minus the
 * 256 byte symbols and the two specials); later lines are ignored, as there. */
#define CLIP_MAX_MERGES (49152 - 256 - 2)
#define MERGES_MAX_BYTES (64u * 1024u * 1024u)
#define MAX_LITERALS 16
#define EOW "</w>"
#define EOW_LEN 4

/* ---- Unicode tables ------------------------------------------------------------------------
 *
 * Code points assigned in Unicode 14.0 (the tables of the reference's Python 3.11), as
 * inclusive ranges. Generated with Python 3.11's unicodedata:
 *   ranges of c in 0..0x10FFFF with unicodedata.category(chr(c)) != "Cn"
 * GLib may know newer characters; the reference deletes them as unassigned (category Cn). */
static const uint32_t u14_assigned[][2] = {
    {0x0, 0x377}, {0x37A, 0x37F}, {0x384, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x52F},
    {0x531, 0x556}, {0x559, 0x58A}, {0x58D, 0x58F}, {0x591, 0x5C7}, {0x5D0, 0x5EA}, {0x5EF, 0x5F4},
    {0x600, 0x70D}, {0x70F, 0x74A}, {0x74D, 0x7B1}, {0x7C0, 0x7FA}, {0x7FD, 0x82D}, {0x830, 0x83E},
    {0x840, 0x85B}, {0x85E, 0x85E}, {0x860, 0x86A}, {0x870, 0x88E}, {0x890, 0x891}, {0x898, 0x983},
    {0x985, 0x98C}, {0x98F, 0x990}, {0x993, 0x9A8}, {0x9AA, 0x9B0}, {0x9B2, 0x9B2}, {0x9B6, 0x9B9},
    {0x9BC, 0x9C4}, {0x9C7, 0x9C8}, {0x9CB, 0x9CE}, {0x9D7, 0x9D7}, {0x9DC, 0x9DD}, {0x9DF, 0x9E3},
    {0x9E6, 0x9FE}, {0xA01, 0xA03}, {0xA05, 0xA0A}, {0xA0F, 0xA10}, {0xA13, 0xA28}, {0xA2A, 0xA30},
    {0xA32, 0xA33}, {0xA35, 0xA36}, {0xA38, 0xA39}, {0xA3C, 0xA3C}, {0xA3E, 0xA42}, {0xA47, 0xA48},
    {0xA4B, 0xA4D}, {0xA51, 0xA51}, {0xA59, 0xA5C}, {0xA5E, 0xA5E}, {0xA66, 0xA76}, {0xA81, 0xA83},
    {0xA85, 0xA8D}, {0xA8F, 0xA91}, {0xA93, 0xAA8}, {0xAAA, 0xAB0}, {0xAB2, 0xAB3}, {0xAB5, 0xAB9},
    {0xABC, 0xAC5}, {0xAC7, 0xAC9}, {0xACB, 0xACD}, {0xAD0, 0xAD0}, {0xAE0, 0xAE3}, {0xAE6, 0xAF1},
    {0xAF9, 0xAFF}, {0xB01, 0xB03}, {0xB05, 0xB0C}, {0xB0F, 0xB10}, {0xB13, 0xB28}, {0xB2A, 0xB30},
    {0xB32, 0xB33}, {0xB35, 0xB39}, {0xB3C, 0xB44}, {0xB47, 0xB48}, {0xB4B, 0xB4D}, {0xB55, 0xB57},
    {0xB5C, 0xB5D}, {0xB5F, 0xB63}, {0xB66, 0xB77}, {0xB82, 0xB83}, {0xB85, 0xB8A}, {0xB8E, 0xB90},
    {0xB92, 0xB95}, {0xB99, 0xB9A}, {0xB9C, 0xB9C}, {0xB9E, 0xB9F}, {0xBA3, 0xBA4}, {0xBA8, 0xBAA},
    {0xBAE, 0xBB9}, {0xBBE, 0xBC2}, {0xBC6, 0xBC8}, {0xBCA, 0xBCD}, {0xBD0, 0xBD0}, {0xBD7, 0xBD7},
    {0xBE6, 0xBFA}, {0xC00, 0xC0C}, {0xC0E, 0xC10}, {0xC12, 0xC28}, {0xC2A, 0xC39}, {0xC3C, 0xC44},
    {0xC46, 0xC48}, {0xC4A, 0xC4D}, {0xC55, 0xC56}, {0xC58, 0xC5A}, {0xC5D, 0xC5D}, {0xC60, 0xC63},
    {0xC66, 0xC6F}, {0xC77, 0xC8C}, {0xC8E, 0xC90}, {0xC92, 0xCA8}, {0xCAA, 0xCB3}, {0xCB5, 0xCB9},
    {0xCBC, 0xCC4}, {0xCC6, 0xCC8}, {0xCCA, 0xCCD}, {0xCD5, 0xCD6}, {0xCDD, 0xCDE}, {0xCE0, 0xCE3},
    {0xCE6, 0xCEF}, {0xCF1, 0xCF2}, {0xD00, 0xD0C}, {0xD0E, 0xD10}, {0xD12, 0xD44}, {0xD46, 0xD48},
    {0xD4A, 0xD4F}, {0xD54, 0xD63}, {0xD66, 0xD7F}, {0xD81, 0xD83}, {0xD85, 0xD96}, {0xD9A, 0xDB1},
    {0xDB3, 0xDBB}, {0xDBD, 0xDBD}, {0xDC0, 0xDC6}, {0xDCA, 0xDCA}, {0xDCF, 0xDD4}, {0xDD6, 0xDD6},
    {0xDD8, 0xDDF}, {0xDE6, 0xDEF}, {0xDF2, 0xDF4}, {0xE01, 0xE3A}, {0xE3F, 0xE5B}, {0xE81, 0xE82},
    {0xE84, 0xE84}, {0xE86, 0xE8A}, {0xE8C, 0xEA3}, {0xEA5, 0xEA5}, {0xEA7, 0xEBD}, {0xEC0, 0xEC4},
    {0xEC6, 0xEC6}, {0xEC8, 0xECD}, {0xED0, 0xED9}, {0xEDC, 0xEDF}, {0xF00, 0xF47}, {0xF49, 0xF6C},
    {0xF71, 0xF97}, {0xF99, 0xFBC}, {0xFBE, 0xFCC}, {0xFCE, 0xFDA}, {0x1000, 0x10C5},
    {0x10C7, 0x10C7}, {0x10CD, 0x10CD}, {0x10D0, 0x1248}, {0x124A, 0x124D}, {0x1250, 0x1256},
    {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D}, {0x1290, 0x12B0},
    {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6},
    {0x12D8, 0x1310}, {0x1312, 0x1315}, {0x1318, 0x135A}, {0x135D, 0x137C}, {0x1380, 0x1399},
    {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1400, 0x169C}, {0x16A0, 0x16F8}, {0x1700, 0x1715},
    {0x171F, 0x1736}, {0x1740, 0x1753}, {0x1760, 0x176C}, {0x176E, 0x1770}, {0x1772, 0x1773},
    {0x1780, 0x17DD}, {0x17E0, 0x17E9}, {0x17F0, 0x17F9}, {0x1800, 0x1819}, {0x1820, 0x1878},
    {0x1880, 0x18AA}, {0x18B0, 0x18F5}, {0x1900, 0x191E}, {0x1920, 0x192B}, {0x1930, 0x193B},
    {0x1940, 0x1940}, {0x1944, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9},
    {0x19D0, 0x19DA}, {0x19DE, 0x1A1B}, {0x1A1E, 0x1A5E}, {0x1A60, 0x1A7C}, {0x1A7F, 0x1A89},
    {0x1A90, 0x1A99}, {0x1AA0, 0x1AAD}, {0x1AB0, 0x1ACE}, {0x1B00, 0x1B4C}, {0x1B50, 0x1B7E},
    {0x1B80, 0x1BF3}, {0x1BFC, 0x1C37}, {0x1C3B, 0x1C49}, {0x1C4D, 0x1C88}, {0x1C90, 0x1CBA},
    {0x1CBD, 0x1CC7}, {0x1CD0, 0x1CFA}, {0x1D00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D},
    {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FC4}, {0x1FC6, 0x1FD3}, {0x1FD6, 0x1FDB},
    {0x1FDD, 0x1FEF}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFE}, {0x2000, 0x2064}, {0x2066, 0x2071},
    {0x2074, 0x208E}, {0x2090, 0x209C}, {0x20A0, 0x20C0}, {0x20D0, 0x20F0}, {0x2100, 0x218B},
    {0x2190, 0x2426}, {0x2440, 0x244A}, {0x2460, 0x2B73}, {0x2B76, 0x2B95}, {0x2B97, 0x2CF3},
    {0x2CF9, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D}, {0x2D30, 0x2D67}, {0x2D6F, 0x2D70},
    {0x2D7F, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE}, {0x2DB0, 0x2DB6}, {0x2DB8, 0x2DBE},
    {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6}, {0x2DD8, 0x2DDE}, {0x2DE0, 0x2E5D},
    {0x2E80, 0x2E99}, {0x2E9B, 0x2EF3}, {0x2F00, 0x2FD5}, {0x2FF0, 0x2FFB}, {0x3000, 0x303F},
    {0x3041, 0x3096}, {0x3099, 0x30FF}, {0x3105, 0x312F}, {0x3131, 0x318E}, {0x3190, 0x31E3},
    {0x31F0, 0x321E}, {0x3220, 0xA48C}, {0xA490, 0xA4C6}, {0xA4D0, 0xA62B}, {0xA640, 0xA6F7},
    {0xA700, 0xA7CA}, {0xA7D0, 0xA7D1}, {0xA7D3, 0xA7D3}, {0xA7D5, 0xA7D9}, {0xA7F2, 0xA82C},
    {0xA830, 0xA839}, {0xA840, 0xA877}, {0xA880, 0xA8C5}, {0xA8CE, 0xA8D9}, {0xA8E0, 0xA953},
    {0xA95F, 0xA97C}, {0xA980, 0xA9CD}, {0xA9CF, 0xA9D9}, {0xA9DE, 0xA9FE}, {0xAA00, 0xAA36},
    {0xAA40, 0xAA4D}, {0xAA50, 0xAA59}, {0xAA5C, 0xAAC2}, {0xAADB, 0xAAF6}, {0xAB01, 0xAB06},
    {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26}, {0xAB28, 0xAB2E}, {0xAB30, 0xAB6B},
    {0xAB70, 0xABED}, {0xABF0, 0xABF9}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6}, {0xD7CB, 0xD7FB},
    {0xD800, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFB1D, 0xFB36},
    {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E}, {0xFB40, 0xFB41}, {0xFB43, 0xFB44}, {0xFB46, 0xFBC2},
    {0xFBD3, 0xFD8F}, {0xFD92, 0xFDC7}, {0xFDCF, 0xFDCF}, {0xFDF0, 0xFE19}, {0xFE20, 0xFE52},
    {0xFE54, 0xFE66}, {0xFE68, 0xFE6B}, {0xFE70, 0xFE74}, {0xFE76, 0xFEFC}, {0xFEFF, 0xFEFF},
    {0xFF01, 0xFFBE}, {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF}, {0xFFD2, 0xFFD7}, {0xFFDA, 0xFFDC},
    {0xFFE0, 0xFFE6}, {0xFFE8, 0xFFEE}, {0xFFF9, 0xFFFD}, {0x10000, 0x1000B}, {0x1000D, 0x10026},
    {0x10028, 0x1003A}, {0x1003C, 0x1003D}, {0x1003F, 0x1004D}, {0x10050, 0x1005D},
    {0x10080, 0x100FA}, {0x10100, 0x10102}, {0x10107, 0x10133}, {0x10137, 0x1018E},
    {0x10190, 0x1019C}, {0x101A0, 0x101A0}, {0x101D0, 0x101FD}, {0x10280, 0x1029C},
    {0x102A0, 0x102D0}, {0x102E0, 0x102FB}, {0x10300, 0x10323}, {0x1032D, 0x1034A},
    {0x10350, 0x1037A}, {0x10380, 0x1039D}, {0x1039F, 0x103C3}, {0x103C8, 0x103D5},
    {0x10400, 0x1049D}, {0x104A0, 0x104A9}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10500, 0x10527}, {0x10530, 0x10563}, {0x1056F, 0x1057A}, {0x1057C, 0x1058A},
    {0x1058C, 0x10592}, {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1},
    {0x105B3, 0x105B9}, {0x105BB, 0x105BC}, {0x10600, 0x10736}, {0x10740, 0x10755},
    {0x10760, 0x10767}, {0x10780, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA},
    {0x10800, 0x10805}, {0x10808, 0x10808}, {0x1080A, 0x10835}, {0x10837, 0x10838},
    {0x1083C, 0x1083C}, {0x1083F, 0x10855}, {0x10857, 0x1089E}, {0x108A7, 0x108AF},
    {0x108E0, 0x108F2}, {0x108F4, 0x108F5}, {0x108FB, 0x1091B}, {0x1091F, 0x10939},
    {0x1093F, 0x1093F}, {0x10980, 0x109B7}, {0x109BC, 0x109CF}, {0x109D2, 0x10A03},
    {0x10A05, 0x10A06}, {0x10A0C, 0x10A13}, {0x10A15, 0x10A17}, {0x10A19, 0x10A35},
    {0x10A38, 0x10A3A}, {0x10A3F, 0x10A48}, {0x10A50, 0x10A58}, {0x10A60, 0x10A9F},
    {0x10AC0, 0x10AE6}, {0x10AEB, 0x10AF6}, {0x10B00, 0x10B35}, {0x10B39, 0x10B55},
    {0x10B58, 0x10B72}, {0x10B78, 0x10B91}, {0x10B99, 0x10B9C}, {0x10BA9, 0x10BAF},
    {0x10C00, 0x10C48}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x10CFA, 0x10D27},
    {0x10D30, 0x10D39}, {0x10E60, 0x10E7E}, {0x10E80, 0x10EA9}, {0x10EAB, 0x10EAD},
    {0x10EB0, 0x10EB1}, {0x10F00, 0x10F27}, {0x10F30, 0x10F59}, {0x10F70, 0x10F89},
    {0x10FB0, 0x10FCB}, {0x10FE0, 0x10FF6}, {0x11000, 0x1104D}, {0x11052, 0x11075},
    {0x1107F, 0x110C2}, {0x110CD, 0x110CD}, {0x110D0, 0x110E8}, {0x110F0, 0x110F9},
    {0x11100, 0x11134}, {0x11136, 0x11147}, {0x11150, 0x11176}, {0x11180, 0x111DF},
    {0x111E1, 0x111F4}, {0x11200, 0x11211}, {0x11213, 0x1123E}, {0x11280, 0x11286},
    {0x11288, 0x11288}, {0x1128A, 0x1128D}, {0x1128F, 0x1129D}, {0x1129F, 0x112A9},
    {0x112B0, 0x112EA}, {0x112F0, 0x112F9}, {0x11300, 0x11303}, {0x11305, 0x1130C},
    {0x1130F, 0x11310}, {0x11313, 0x11328}, {0x1132A, 0x11330}, {0x11332, 0x11333},
    {0x11335, 0x11339}, {0x1133B, 0x11344}, {0x11347, 0x11348}, {0x1134B, 0x1134D},
    {0x11350, 0x11350}, {0x11357, 0x11357}, {0x1135D, 0x11363}, {0x11366, 0x1136C},
    {0x11370, 0x11374}, {0x11400, 0x1145B}, {0x1145D, 0x11461}, {0x11480, 0x114C7},
    {0x114D0, 0x114D9}, {0x11580, 0x115B5}, {0x115B8, 0x115DD}, {0x11600, 0x11644},
    {0x11650, 0x11659}, {0x11660, 0x1166C}, {0x11680, 0x116B9}, {0x116C0, 0x116C9},
    {0x11700, 0x1171A}, {0x1171D, 0x1172B}, {0x11730, 0x11746}, {0x11800, 0x1183B},
    {0x118A0, 0x118F2}, {0x118FF, 0x11906}, {0x11909, 0x11909}, {0x1190C, 0x11913},
    {0x11915, 0x11916}, {0x11918, 0x11935}, {0x11937, 0x11938}, {0x1193B, 0x11946},
    {0x11950, 0x11959}, {0x119A0, 0x119A7}, {0x119AA, 0x119D7}, {0x119DA, 0x119E4},
    {0x11A00, 0x11A47}, {0x11A50, 0x11AA2}, {0x11AB0, 0x11AF8}, {0x11C00, 0x11C08},
    {0x11C0A, 0x11C36}, {0x11C38, 0x11C45}, {0x11C50, 0x11C6C}, {0x11C70, 0x11C8F},
    {0x11C92, 0x11CA7}, {0x11CA9, 0x11CB6}, {0x11D00, 0x11D06}, {0x11D08, 0x11D09},
    {0x11D0B, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D47},
    {0x11D50, 0x11D59}, {0x11D60, 0x11D65}, {0x11D67, 0x11D68}, {0x11D6A, 0x11D8E},
    {0x11D90, 0x11D91}, {0x11D93, 0x11D98}, {0x11DA0, 0x11DA9}, {0x11EE0, 0x11EF8},
    {0x11FB0, 0x11FB0}, {0x11FC0, 0x11FF1}, {0x11FFF, 0x12399}, {0x12400, 0x1246E},
    {0x12470, 0x12474}, {0x12480, 0x12543}, {0x12F90, 0x12FF2}, {0x13000, 0x1342E},
    {0x13430, 0x13438}, {0x14400, 0x14646}, {0x16800, 0x16A38}, {0x16A40, 0x16A5E},
    {0x16A60, 0x16A69}, {0x16A6E, 0x16ABE}, {0x16AC0, 0x16AC9}, {0x16AD0, 0x16AED},
    {0x16AF0, 0x16AF5}, {0x16B00, 0x16B45}, {0x16B50, 0x16B59}, {0x16B5B, 0x16B61},
    {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F}, {0x16E40, 0x16E9A}, {0x16F00, 0x16F4A},
    {0x16F4F, 0x16F87}, {0x16F8F, 0x16F9F}, {0x16FE0, 0x16FE4}, {0x16FF0, 0x16FF1},
    {0x17000, 0x187F7}, {0x18800, 0x18CD5}, {0x18D00, 0x18D08}, {0x1AFF0, 0x1AFF3},
    {0x1AFF5, 0x1AFFB}, {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122}, {0x1B150, 0x1B152},
    {0x1B164, 0x1B167}, {0x1B170, 0x1B2FB}, {0x1BC00, 0x1BC6A}, {0x1BC70, 0x1BC7C},
    {0x1BC80, 0x1BC88}, {0x1BC90, 0x1BC99}, {0x1BC9C, 0x1BCA3}, {0x1CF00, 0x1CF2D},
    {0x1CF30, 0x1CF46}, {0x1CF50, 0x1CFC3}, {0x1D000, 0x1D0F5}, {0x1D100, 0x1D126},
    {0x1D129, 0x1D1EA}, {0x1D200, 0x1D245}, {0x1D2E0, 0x1D2F3}, {0x1D300, 0x1D356},
    {0x1D360, 0x1D378}, {0x1D400, 0x1D454}, {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F},
    {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A},
    {0x1D50D, 0x1D514}, {0x1D516, 0x1D51C}, {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E},
    {0x1D540, 0x1D544}, {0x1D546, 0x1D546}, {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5},
    {0x1D6A8, 0x1D7CB}, {0x1D7CE, 0x1DA8B}, {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF},
    {0x1DF00, 0x1DF1E}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021},
    {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E100, 0x1E12C}, {0x1E130, 0x1E13D},
    {0x1E140, 0x1E149}, {0x1E14E, 0x1E14F}, {0x1E290, 0x1E2AE}, {0x1E2C0, 0x1E2F9},
    {0x1E2FF, 0x1E2FF}, {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB}, {0x1E7ED, 0x1E7EE},
    {0x1E7F0, 0x1E7FE}, {0x1E800, 0x1E8C4}, {0x1E8C7, 0x1E8D6}, {0x1E900, 0x1E94B},
    {0x1E950, 0x1E959}, {0x1E95E, 0x1E95F}, {0x1EC71, 0x1ECB4}, {0x1ED01, 0x1ED3D},
    {0x1EE00, 0x1EE03}, {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24},
    {0x1EE27, 0x1EE27}, {0x1EE29, 0x1EE32}, {0x1EE34, 0x1EE37}, {0x1EE39, 0x1EE39},
    {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42}, {0x1EE47, 0x1EE47}, {0x1EE49, 0x1EE49},
    {0x1EE4B, 0x1EE4B}, {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52}, {0x1EE54, 0x1EE54},
    {0x1EE57, 0x1EE57}, {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B}, {0x1EE5D, 0x1EE5D},
    {0x1EE5F, 0x1EE5F}, {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A},
    {0x1EE6C, 0x1EE72}, {0x1EE74, 0x1EE77}, {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E},
    {0x1EE80, 0x1EE89}, {0x1EE8B, 0x1EE9B}, {0x1EEA1, 0x1EEA3}, {0x1EEA5, 0x1EEA9},
    {0x1EEAB, 0x1EEBB}, {0x1EEF0, 0x1EEF1}, {0x1F000, 0x1F02B}, {0x1F030, 0x1F093},
    {0x1F0A0, 0x1F0AE}, {0x1F0B1, 0x1F0BF}, {0x1F0C1, 0x1F0CF}, {0x1F0D1, 0x1F0F5},
    {0x1F100, 0x1F1AD}, {0x1F1E6, 0x1F202}, {0x1F210, 0x1F23B}, {0x1F240, 0x1F248},
    {0x1F250, 0x1F251}, {0x1F260, 0x1F265}, {0x1F300, 0x1F6D7}, {0x1F6DD, 0x1F6EC},
    {0x1F6F0, 0x1F6FC}, {0x1F700, 0x1F773}, {0x1F780, 0x1F7D8}, {0x1F7E0, 0x1F7EB},
    {0x1F7F0, 0x1F7F0}, {0x1F800, 0x1F80B}, {0x1F810, 0x1F847}, {0x1F850, 0x1F859},
    {0x1F860, 0x1F887}, {0x1F890, 0x1F8AD}, {0x1F8B0, 0x1F8B1}, {0x1F900, 0x1FA53},
    {0x1FA60, 0x1FA6D}, {0x1FA70, 0x1FA74}, {0x1FA78, 0x1FA7C}, {0x1FA80, 0x1FA86},
    {0x1FA90, 0x1FAAC}, {0x1FAB0, 0x1FABA}, {0x1FAC0, 0x1FAC5}, {0x1FAD0, 0x1FAD9},
    {0x1FAE0, 0x1FAE7}, {0x1FAF0, 0x1FAF6}, {0x1FB00, 0x1FB92}, {0x1FB94, 0x1FBCA},
    {0x1FBF0, 0x1FBF9}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B738}, {0x2B740, 0x2B81D},
    {0x2B820, 0x2CEA1}, {0x2CEB0, 0x2EBE0}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A},
    {0xE0001, 0xE0001}, {0xE0020, 0xE007F}, {0xE0100, 0xE01EF}, {0xF0000, 0xFFFFD},
    {0x100000, 0x10FFFD},
};

static bool
assigned14(gunichar c)
{
    if (c < 0x378)
        return true;
    size_t lo = 0, hi = sizeof u14_assigned / sizeof u14_assigned[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < u14_assigned[mid][0])
            hi = mid;
        else if (c > u14_assigned[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* BERT's _is_chinese_char ranges. */
static bool
is_cjk(gunichar c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

enum clean_class {
    CL_DROP,  /* deleted: NUL, U+FFFD, C* (incl. unassigned in 14.0) except TAB/LF/CR */
    CL_SPACE, /* word separator: TAB/LF/CR, Zs, and Zl/Zp (which Python's str.split splits on) */
    CL_CJK,   /* a word of its own */
    CL_KEEP,
};

static enum clean_class
clean_class(gunichar c)
{
    if (c == 0 || c == 0xFFFD)
        return CL_DROP;
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ')
        return CL_SPACE;
    if (c < 0x7F)
        return c < 0x20 ? CL_DROP : CL_KEEP;
    if (!assigned14(c))
        return CL_DROP;
    switch (g_unichar_type(c)) {
    case G_UNICODE_CONTROL:
    case G_UNICODE_FORMAT:
    case G_UNICODE_UNASSIGNED:
    case G_UNICODE_PRIVATE_USE:
    case G_UNICODE_SURROGATE:
        return CL_DROP;
    case G_UNICODE_SPACE_SEPARATOR:
    case G_UNICODE_LINE_SEPARATOR:
    case G_UNICODE_PARAGRAPH_SEPARATOR:
        return CL_SPACE;
    default:
        return is_cjk(c) ? CL_CJK : CL_KEEP;
    }
}

static bool
is_letter(gunichar c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    switch (g_unichar_type(c)) {
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_UPPERCASE_LETTER:
        return true;
    default:
        return false;
    }
}

static bool
is_number(gunichar c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    switch (g_unichar_type(c)) {
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
        return true;
    default:
        return false;
    }
}

/* Python's Case_Ignorable, as its final-sigma rule uses it: Mn Me Cf Lm Sk and the
 * Word_Break MidLetter / MidNumLet / Single_Quote characters. Checked against Python 3.11 for
 * every code point assigned in 14.0. */
static bool
case_ignorable(gunichar c)
{
    switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4:
    case 0x2018: case 0x2019: case 0x2024: case 0x2027: case 0xFE13: case 0xFE52:
    case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return true;
    default:
        break;
    }
    switch (g_unichar_type(c)) {
    case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
    case G_UNICODE_FORMAT:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_MODIFIER_SYMBOL:
        return true;
    default:
        return false;
    }
}

/* Python's Cased (Lu Ll Lt + Other_Lowercase / Other_Uppercase outside those), for
 * characters that are not case-ignorable (those are skipped first). */
static bool
cased(gunichar c)
{
    switch (g_unichar_type(c)) {
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_UPPERCASE_LETTER:
        return true;
    default:
        return c == 0xAA || c == 0xBA || (c >= 0x2160 && c <= 0x217F) ||
               (c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) ||
               (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
    }
}

/* U+03A3 at w[i] lower-cases to final sigma when preceded by a cased letter and not followed
 * by one, skipping case-ignorable characters both ways (Python's handle_capital_sigma). */
static bool
final_sigma(const gunichar *w, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && case_ignorable(w[j - 1]))
        j--;
    if (j == 0 || !cased(w[j - 1]))
        return false;
    for (j = i + 1; j < n && case_ignorable(w[j]); j++)
        ;
    return j == n || !cased(w[j]);
}

/* Python str.lower(): full lower-case mapping. out needs room for 2n code points (U+0130 is
 * the only character whose lower case has two). GLib's g_unichar_tolower maps letters only;
 * Python also maps the Roman numerals (Nl) and circled letters (So). Returns the length. */
static size_t
lower_word(const gunichar *w, size_t n, gunichar *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        gunichar c = w[i];
        if (c < 0x80) {
            out[k++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            out[k++] = 'i';
            out[k++] = 0x307;
        } else if (c == 0x3A3) {
            out[k++] = final_sigma(w, n, i) ? 0x3C2 : 0x3C3;
        } else if (c >= 0x2160 && c <= 0x216F) {
            out[k++] = c + 0x10;
        } else if (c >= 0x24B6 && c <= 0x24CF) {
            out[k++] = c + 0x1A;
        } else {
            out[k++] = g_unichar_tolower(c);
        }
    }
    return k;
}

/* Decodes one code point at s[0..n) (n >= 1). Invalid input gives U+FFFD and consumes the
 * maximal subpart of an ill-formed sequence (one byte at least), like Python's
 * decode("utf-8", "replace"). *bad is set when the sequence was invalid. */
static gunichar
utf8_next(const uint8_t *s, size_t n, size_t *len, bool *bad)
{
    uint8_t b = s[0];
    *bad = false;
    if (b < 0x80) {
        *len = 1;
        return b;
    }
    size_t need;
    gunichar c;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        c = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        c = b & 0x07;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        *len = 1;
        *bad = true;
        return 0xFFFD;
    }
    size_t k = 1;
    for (; k <= need; k++) {
        if (k >= n) 
            break;
        uint8_t x = s[k];
        if (x < lo || x > hi)
            break;
        lo = 0x80;
        hi = 0xBF;
        c = (c << 6) | (x & 0x3F);
    }
    *len = k;
    if (k <= need) {
        *bad = true;
        return 0xFFFD;
    }
    return c;
}

static size_t
utf8_put(gunichar c, uint8_t *o)
{
    return (size_t)g_unichar_to_utf8(c, (gchar *)o);
}

/* GPT-2 / CLIP byte symbols: printable bytes map to themselves, the other 68 to U+0100.. in
 * byte order. */
static gunichar
byte_symbol(unsigned b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
        return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE)))
            k++;
    return 0x100 + k;
}

/* ---- the tokenizer object ---------------------------------------------------------------- */

struct pair_slot {
    uint64_t key; /* (left << 32) | right; PAIR_EMPTY when free */
    int32_t rank;
    int32_t merged;
};
#define PAIR_EMPTY UINT64_MAX

struct literal {
    char *text;
    size_t len;
    int32_t id;
};

struct unclip_tokenizer {
    int32_t n_vocab;
    char *pool;      /* every token string, NUL-terminated, back to back */
    size_t *tok_off; /* [n_vocab] offset of each id's string in pool */
    int32_t byte_id[256];   /* id of each byte's symbol */
    int32_t byte_w_id[256]; /* id of each byte's symbol + "</w>" */
    int16_t sym_byte[0x144]; /* byte of a symbol code point, -1 for non-symbols */
    struct pair_slot *pairs;
    size_t pair_mask; /* capacity - 1 (power of two) */
    int32_t n_merges;
    int32_t bos, eos, pad, unk;
    int32_t sot_id, eot_id; /* ids of the regex literals "<|startoftext|>", "<|endoftext|>" */
    struct literal lit[MAX_LITERALS]; /* sorted longest first */
    int n_lit;
    uint8_t lit_first[256]; /* 1 when some literal starts with this byte */
    /* Work bound for giant words: at most this many code points of one word and bytes of one
     * pre-token are tokenized; the rest of the prompt is then dropped uncounted. Chosen so a
     * cut word still yields far more than 77 tokens (see set_limits). */
    size_t limit;
};

static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static const struct pair_slot *
pair_find(const struct unclip_tokenizer *tok, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & tok->pair_mask;
    for (;;) {
        const struct pair_slot *s = &tok->pairs[i];
        if (s->key == key)
            return s;
        if (s->key == PAIR_EMPTY)
            return NULL;
        i = (i + 1) & tok->pair_mask;
    }
}

int32_t
unclip__tokenizer_vocab_size(const struct unclip_tokenizer *tok)
{
    return tok ? tok->n_vocab : 0;
}

int32_t
unclip__tokenizer_bos(const struct unclip_tokenizer *tok)
{
    return tok ? tok->bos : -1;
}

int32_t
unclip__tokenizer_eos(const struct unclip_tokenizer *tok)
{
    return tok ? tok->eos : -1;
}

int32_t
unclip__tokenizer_pad(const struct unclip_tokenizer *tok)
{
    return tok ? tok->pad : -1;
}

const char *
unclip__tokenizer_token(const struct unclip_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || id >= tok->n_vocab)
        return NULL;
    return tok->pool + tok->tok_off[id];
}

void
unclip__tokenizer_free(struct unclip_tokenizer *tok)
{
    if (!tok)
        return;
    for (int i = 0; i < tok->n_lit; i++)
        unclip__free(tok->lit[i].text);
    unclip__free(tok->pairs);
    unclip__free(tok->tok_off);
    unclip__free(tok->pool);
    unclip__free(tok);
}

/* ---- loading ------------------------------------------------------------------------------ */

struct loader {
    struct unclip_tokenizer *tok;
    char *vocab_path, *merges_path, *smap_path, *cfg_path;
    struct unclip_json *vj, *smap, *cfg;
    int32_t *vhash;    /* open addressing over the token strings: id or -1 */
    size_t vmask;
    uint8_t *covered;  /* [n_vocab]: id is a byte symbol, a merge result or a special */
    struct unclip_err *err;
};

static uint64_t
str_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
    return mix64(h);
}

/* id of a token string, -1 when absent. (json-glib's member lookup costs a lock and type
 * checks per call; load does ~200k lookups.) */
static int32_t
vocab_id(const struct loader *ld, const char *s)
{
    size_t n = strlen(s);
    size_t i = (size_t)str_hash(s, n) & ld->vmask;
    for (;; i = (i + 1) & ld->vmask) {
        int32_t id = ld->vhash[i];
        if (id < 0)
            return -1;
        /* strcmp, not memcmp of n + 1 bytes: a shorter token at the end of the pool would
         * be read past its end (found by the fuzz replay under ASan). */
        const char *t = ld->tok->pool + ld->tok->tok_off[id];
        if (strcmp(t, s) == 0)
            return id;
    }
}

static unclip_status
nomem(struct unclip_err *err, const char *what)
{
    return unclip__fail(err, UNCLIP_E_NOMEM, "%s: out of host memory", what);
}

static unclip_status
load_vocab(struct loader *ld)
{
    struct unclip_tokenizer *tok = ld->tok;
    const char *name = ld->vocab_path;
    unclip_status st = unclip__json_load(ld->vocab_path, name, &ld->vj, ld->err);
    if (st != UNCLIP_OK)
        return st;
    JsonObject *vocab = unclip__json_root(ld->vj);
    guint n = json_object_get_size(vocab);
    if (n < 512)
        return unclip__fail(ld->err, UNCLIP_E_FORMAT,
                            "%s: %u entries; a byte-level BPE vocabulary has at least 512", name,
                            n);
    if (n > (guint)INT32_MAX / 4)
        return unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s: too many entries (%u)", name, n);
    tok->n_vocab = (int32_t)n;

    /* Pass 1: values, and the pool size. Keys are unique (the JSON reader rejects repeats). */
    JsonObjectIter it;
    const gchar *key;
    JsonNode *node;
    size_t pool_size = 0;
    json_object_iter_init_ordered(&it, vocab);
    while (json_object_iter_next_ordered(&it, &key, &node)) {
        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64)
            return unclip__fail(ld->err, UNCLIP_E_FORMAT,
                                "%s: entry '%s': the id is not an integer", name, key);
        gint64 v = json_node_get_int(node);
        if (v < 0 || v >= (gint64)n)
            return unclip__fail(ld->err, UNCLIP_E_FORMAT,
                                "%s: entry '%s': id %lld is out of range 0..%u (the file has %u "
                                "entries)", name, key, (long long)v, n - 1, n);
        if (!key[0])
            return unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s: empty token string (id %lld)",
                                name, (long long)v);
        pool_size += strlen(key) + 1;
    }
    size_t cap = 1024;
    while (cap < 2 * (size_t)n)
        cap *= 2;
    tok->pool = unclip__malloc(pool_size);
    tok->tok_off = unclip__malloc((size_t)n * sizeof *tok->tok_off);
    ld->vhash = unclip__malloc(cap * sizeof *ld->vhash);
    if (!tok->pool || !tok->tok_off || !ld->vhash)
        return nomem(ld->err, name);
    ld->vmask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        ld->vhash[i] = -1;
    for (guint i = 0; i < n; i++)
        tok->tok_off[i] = SIZE_MAX;

    /* Pass 2: strings into the pool, ids unique (n distinct ids in 0..n-1 use every id). */
    size_t at = 0;
    json_object_iter_init_ordered(&it, vocab);
    while (json_object_iter_next_ordered(&it, &key, &node)) {
        int32_t id = (int32_t)json_node_get_int(node);
        if (tok->tok_off[id] != SIZE_MAX)
            return unclip__fail(ld->err, UNCLIP_E_FORMAT,
                                "%s: entries '%s' and '%s' both have id %d", name,
                                tok->pool + tok->tok_off[id], key, id);
        size_t len = strlen(key);
        memcpy(tok->pool + at, key, len + 1);
        tok->tok_off[id] = at;
        at += len + 1;
        size_t i = (size_t)str_hash(key, len) & ld->vmask;
        while (ld->vhash[i] >= 0)
            i = (i + 1) & ld->vmask;
        ld->vhash[i] = id;
    }
    unclip__json_free(ld->vj); /* the tree is no longer needed: free it early */
    ld->vj = NULL;

    ld->covered = unclip__calloc((size_t)n, 1);
    if (!ld->covered)
        return nomem(ld->err, name);
    for (int i = 0; i < 0x144; i++)
        tok->sym_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        char sym[16], symw[16];
        gunichar c = byte_symbol(b);
        size_t k = utf8_put(c, (uint8_t *)sym);
        tok->sym_byte[c] = (int16_t)b;
        sym[k] = 0;
        memcpy(symw, sym, k);
        memcpy(symw + k, EOW, EOW_LEN + 1);
        int32_t id = vocab_id(ld, sym), idw = vocab_id(ld, symw);
        if (id < 0 || idw < 0)
            return unclip__fail(ld->err, UNCLIP_E_MODEL,
                                "%s: no entry for the byte symbol '%s' of byte 0x%02X", name,
                                id < 0 ? sym : symw, b);
        tok->byte_id[b] = id;
        tok->byte_w_id[b] = idw;
        ld->covered[id] = ld->covered[idw] = 1;
    }
    return UNCLIP_OK;
}

static bool
merges_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool
ascii_space(char c)
{
    return merges_space(c) || c == '\n';
}

static unclip_status
load_merges(struct loader *ld)
{
    struct unclip_tokenizer *tok = ld->tok;
    const char *name = ld->merges_path;
    if (!g_file_test(name, G_FILE_TEST_EXISTS))
        return unclip__fail(ld->err, UNCLIP_E_MODEL, "%s: file not found", name);
    gchar *data = NULL;
    gsize size = 0;
    GError *ge = NULL;
    if (!g_file_get_contents(name, &data, &size, &ge)) {
        unclip_status st = unclip__fail(ld->err, UNCLIP_E_IO, "%s: %s", name,
                                        ge ? ge->message : "cannot read");
        g_clear_error(&ge);
        return st;
    }
    unclip_status st = UNCLIP_OK;
    char *scratch = NULL;
    const gchar *bad = NULL;
    if (size > MERGES_MAX_BYTES) {
        st = unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s: %zu bytes, larger than the %u accepted",
                          name, (size_t)size, MERGES_MAX_BYTES);
        goto done;
    }
    if (!g_utf8_validate(data, (gssize)size, &bad)) {
        st = unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s: not UTF-8 (byte %zu)", name,
                          (size_t)(bad - data));
        goto done;
    }
    /* Like the reference: strip the whole file, split on '\n', skip the header line. */
    const char *p = data, *end = data + size;
    int line = 1;
    while (p < end && ascii_space(*p)) {
        if (*p == '\n')
            line++;
        p++;
    }
    while (end > p && ascii_space(end[-1]))
        end--;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *hdr_end = nl ? nl : end;
    if (p == end || !g_strstr_len(p, hdr_end - p, "#version")) {
        st = unclip__fail(ld->err, UNCLIP_E_FORMAT,
                          "%s:%d: expected the '#version' header line (the first line is "
                          "skipped as a header)", name, line);
        goto done;
    }
    const int header_line = line;
    p = nl ? nl + 1 : end;

    /* Count the merges read (at most CLIP_MAX_MERGES) to size the pair table. */
    size_t count = 0, longest = 0;
    for (const char *q = p; q < end && count < CLIP_MAX_MERGES; count++) {
        const char *e = memchr(q, '\n', (size_t)(end - q));
        e = e ? e : end;
        if ((size_t)(e - q) > longest)
            longest = (size_t)(e - q);
        q = e + 1;
    }
    size_t cap = 16;
    while (cap < 2 * count)
        cap *= 2;
    tok->pairs = unclip__malloc(cap * sizeof *tok->pairs);
    scratch = unclip__malloc(longest + 2);
    if (!tok->pairs || !scratch) {
        st = nomem(ld->err, name);
        goto done;
    }
    for (size_t i = 0; i < cap; i++)
        tok->pairs[i].key = PAIR_EMPTY;
    tok->pair_mask = cap - 1;

    for (size_t r = 0; r < count; r++) {
        line++;
        const char *e = memchr(p, '\n', (size_t)(end - p));
        e = e ? e : end;
        /* Fields: two symbols separated by blanks. */
        const char *f[3];
        size_t fl[3];
        int nf = 0;
        for (const char *q = p; q < e;) {
            while (q < e && merges_space(*q))
                q++;
            if (q == e)
                break;
            const char *s = q;
            while (q < e && !merges_space(*q))
                q++;
            if (nf < 3) {
                f[nf] = s;
                fl[nf] = (size_t)(q - s);
            }
            nf++;
        }
        if (nf != 2) {
            st = unclip__fail(ld->err, UNCLIP_E_FORMAT,
                              "%s:%d: expected two symbols separated by a space, found %d field%s",
                              name, line, nf, nf == 1 ? "" : "s");
            goto done;
        }
        /* scratch = "A\0B\0" then "AB\0" for the result. */
        int32_t ids[3] = {-1, -1, -1};
        memcpy(scratch, f[0], fl[0]);
        scratch[fl[0]] = 0;
        ids[0] = vocab_id(ld, scratch);
        if (ids[0] >= 0) {
            memcpy(scratch, f[1], fl[1]);
            scratch[fl[1]] = 0;
            ids[1] = vocab_id(ld, scratch);
        }
        if (ids[0] < 0 || ids[1] < 0) {
            st = unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s:%d: symbol '%s' is not in vocab.json",
                              name, line, scratch);
            goto done;
        }
        memcpy(scratch, f[0], fl[0]);
        memcpy(scratch + fl[0], f[1], fl[1]);
        scratch[fl[0] + fl[1]] = 0;
        ids[2] = vocab_id(ld, scratch);
        if (ids[2] < 0) {
            st = unclip__fail(ld->err, UNCLIP_E_FORMAT,
                              "%s:%d: the merge result '%s' is not in vocab.json", name, line,
                              scratch);
            goto done;
        }
        uint64_t key = ((uint64_t)(uint32_t)ids[0] << 32) | (uint32_t)ids[1];
        size_t i = (size_t)mix64(key) & tok->pair_mask;
        while (tok->pairs[i].key != PAIR_EMPTY && tok->pairs[i].key != key)
            i = (i + 1) & tok->pair_mask;
        if (tok->pairs[i].key == key) {
            st = unclip__fail(ld->err, UNCLIP_E_FORMAT,
                              "%s:%d: duplicate merge '%.*s %.*s' (first on line %d)", name, line,
                              (int)fl[0], f[0], (int)fl[1], f[1],
                              header_line + 1 + tok->pairs[i].rank);
            goto done;
        }
        tok->pairs[i].key = key;
        tok->pairs[i].rank = (int32_t)r;
        tok->pairs[i].merged = ids[2];
        ld->covered[ids[2]] = 1;
        tok->n_merges++;
        p = e + 1;
    }
done:
    unclip__free(scratch);
    g_free(data);
    return st;
}

/* A special token given as "text" or {"content": "text", ...}; NULL when absent or null. */
static unclip_status
special_text(const struct unclip_json *j, const char *key, const char **out,
             struct unclip_err *err)
{
    *out = NULL;
    if (!j)
        return UNCLIP_OK;
    switch (unclip__json_type(j, key)) {
    case UNCLIP_JSON_ABSENT:
    case UNCLIP_JSON_NULL:
        return UNCLIP_OK;
    case UNCLIP_JSON_STRING:
        return unclip__json_string(j, key, out, err);
    case UNCLIP_JSON_OBJECT: {
        char path[64];
        snprintf(path, sizeof path, "%s.content", key);
        return unclip__json_string(j, path, out, err);
    }
    default:
        return unclip__fail(err, UNCLIP_E_FORMAT,
                            "%s: '%s' must be a string or an object with a 'content' string",
                            unclip__json_name(j), key);
    }
}

/* Registers a literal special token (raw-text split). Same text twice must mean the same id. */
static unclip_status
add_literal(struct loader *ld, const char *text, int32_t id, const char *where)
{
    struct unclip_tokenizer *tok = ld->tok;
    size_t len = strlen(text);
    if (!len)
        return unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s: empty special token", where);
    for (int i = 0; i < tok->n_lit; i++) {
        if (strcmp(tok->lit[i].text, text) == 0) {
            if (tok->lit[i].id != id)
                return unclip__fail(ld->err, UNCLIP_E_MODEL,
                                    "%s: special token '%s' has ids %d and %d", where, text,
                                    tok->lit[i].id, id);
            return UNCLIP_OK;
        }
    }
    if (tok->n_lit == MAX_LITERALS)
        return unclip__fail(ld->err, UNCLIP_E_MODEL, "%s: more than %d special tokens", where,
                            MAX_LITERALS);
    char *copy = unclip__strdup(text);
    if (!copy)
        return nomem(ld->err, where);
    /* Keep the list sorted longest first: the first match is the longest. */
    int at = tok->n_lit;
    while (at > 0 && tok->lit[at - 1].len < len) {
        tok->lit[at] = tok->lit[at - 1];
        at--;
    }
    tok->lit[at] = (struct literal){copy, len, id};
    tok->n_lit++;
    tok->lit_first[(uint8_t)text[0]] = 1;
    ld->covered[id] = 1;
    return UNCLIP_OK;
}

static unclip_status
load_added_tokens(struct loader *ld)
{
    const struct unclip_json *j = ld->cfg;
    if (!j || unclip__json_type(j, "added_tokens_decoder") == UNCLIP_JSON_ABSENT ||
        unclip__json_type(j, "added_tokens_decoder") == UNCLIP_JSON_NULL)
        return UNCLIP_OK;
    const char *name = unclip__json_name(j);
    if (unclip__json_type(j, "added_tokens_decoder") != UNCLIP_JSON_OBJECT)
        return unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s: 'added_tokens_decoder' is not an object",
                            name);
    const char **keys = NULL;
    int32_t n = 0;
    unclip_status st = unclip__json_keys(j, "added_tokens_decoder", &keys, &n, ld->err);
    for (int32_t i = 0; st == UNCLIP_OK && i < n; i++) {
        char *endp = NULL;
        long long v = strtoll(keys[i], &endp, 10);
        if (!keys[i][0] || *endp || v < 0 || v >= ld->tok->n_vocab) {
            st = unclip__fail(ld->err, UNCLIP_E_MODEL,
                              "%s: added_tokens_decoder: '%s' is not an id in 0..%d (the size of "
                              "vocab.json)", name, keys[i], ld->tok->n_vocab - 1);
            break;
        }
        char key[64];
        snprintf(key, sizeof key, "added_tokens_decoder.%s", keys[i]);
        const char *text = NULL;
        st = special_text(j, key, &text, ld->err);
        if (st != UNCLIP_OK)
            break;
        if (!text) {
            st = unclip__fail(ld->err, UNCLIP_E_FORMAT, "%s: added_tokens_decoder: id %s has no "
                              "content", name, keys[i]);
            break;
        }
        int32_t vid = vocab_id(ld, text);
        if (vid < 0) {
            st = unclip__fail(ld->err, UNCLIP_E_MODEL,
                              "%s: added token '%s' (id %lld) is not in vocab.json", name, text, v);
            break;
        }
        if (vid != (int32_t)v) {
            st = unclip__fail(ld->err, UNCLIP_E_MODEL,
                              "%s: added token '%s' has id %lld, but vocab.json gives it id %d",
                              name, text, v, vid);
            break;
        }
        st = add_literal(ld, text, vid, name);
    }
    unclip__free(keys);
    return st;
}

/* bos/eos/pad/unk: special_tokens_map.json first, then tokenizer_config.json. */
static unclip_status
load_special(struct loader *ld, const char *key, bool required, int32_t *id,
             const char **text_out)
{
    const char *text = NULL;
    unclip_status st = special_text(ld->smap, key, &text, ld->err);
    if (st == UNCLIP_OK && !text)
        st = special_text(ld->cfg, key, &text, ld->err);
    if (st != UNCLIP_OK)
        return st;
    *id = -1;
    if (text_out)
        *text_out = text;
    if (!text) {
        if (!required)
            return UNCLIP_OK;
        return unclip__fail(ld->err, UNCLIP_E_MODEL,
                            "%s: no '%s' in special_tokens_map.json or tokenizer_config.json",
                            ld->vocab_path, key);
    }
    *id = vocab_id(ld, text);
    if (*id < 0)
        return unclip__fail(ld->err, UNCLIP_E_MODEL, "%s: %s '%s' is not in vocab.json",
                            ld->vocab_path, key, text);
    return add_literal(ld, text, *id, key);
}

/* A token spells at most max_b bytes, and NFC / lower-casing shrink a word's UTF-8 at most
 * 3x (Hangul jamo), so a word of `limit` code points gives >= limit / (3 max_b) tokens: with
 * limit >= 8 * 76 * max_b that is > 200, i.e. a cut word is always truncated and the kept 75
 * ids come from far before the cut. */
static void
set_limits(struct unclip_tokenizer *tok)
{
    size_t max_b = 1;
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        const char *t = tok->pool + tok->tok_off[id];
        size_t len = strlen(t), nb = 0;
        if (len >= EOW_LEN && memcmp(t + len - EOW_LEN, EOW, EOW_LEN) == 0)
            len -= EOW_LEN;
        /* a byte symbol is one byte; anything else stands for its own UTF-8 */
        for (const char *q = t; q < t + len; q = g_utf8_next_char(q)) {
            gunichar c = g_utf8_get_char(q);
            nb += c < 0x144 && tok->sym_byte[c] >= 0 ? 1 : (size_t)(g_utf8_next_char(q) - q);
        }
        if (nb > max_b)
            max_b = nb;
    }
    tok->limit = 8 * (size_t)(MAX_CONTENT + 1) * max_b;
    if (tok->limit < 16384)
        tok->limit = 16384;
}

static unclip_status
load_optional_json(const char *path, struct unclip_json **out, struct unclip_err *err)
{
    *out = NULL;
    if (!g_file_test(path, G_FILE_TEST_EXISTS))
        return UNCLIP_OK;
    return unclip__json_load(path, path, out, err);
}

unclip_status
unclip__tokenizer_load(const char *dir, struct unclip_tokenizer **out, struct unclip_err *err)
{
    if (!dir || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "tokenizer: NULL argument");
    struct loader ld = {.err = err};
    unclip_status st = UNCLIP_OK;
    ld.tok = unclip__calloc(1, sizeof *ld.tok);
    ld.vocab_path = g_build_filename(dir, "vocab.json", NULL);
    ld.merges_path = g_build_filename(dir, "merges.txt", NULL);
    ld.smap_path = g_build_filename(dir, "special_tokens_map.json", NULL);
    ld.cfg_path = g_build_filename(dir, "tokenizer_config.json", NULL);
    if (!ld.tok) {
        st = nomem(err, dir);
        goto done;
    }
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        st = unclip__fail(err, UNCLIP_E_MODEL, "%s: tokenizer folder not found", dir);
        goto done;
    }
    if ((st = load_vocab(&ld)) != UNCLIP_OK || (st = load_merges(&ld)) != UNCLIP_OK ||
        (st = load_optional_json(ld.smap_path, &ld.smap, err)) != UNCLIP_OK ||
        (st = load_optional_json(ld.cfg_path, &ld.cfg, err)) != UNCLIP_OK)
        goto done;
    if (ld.cfg) {
        enum unclip_json_type t = unclip__json_type(ld.cfg, "model_max_length");
        if (t != UNCLIP_JSON_ABSENT && t != UNCLIP_JSON_NULL) {
            int64_t mml = 0;
            if (t != UNCLIP_JSON_INT ||
                unclip__json_int(ld.cfg, "model_max_length", 0, INT64_MAX, &mml, NULL) !=
                    UNCLIP_OK ||
                mml != UNCLIP_TOKENIZER_MAX_IDS) {
                st = unclip__fail(err, UNCLIP_E_MODEL,
                                  "%s: model_max_length must be %d (the CLIP text encoder's "
                                  "length)", ld.cfg_path, UNCLIP_TOKENIZER_MAX_IDS);
                goto done;
            }
        }
    }
    struct unclip_tokenizer *tok = ld.tok;
    if ((st = load_added_tokens(&ld)) != UNCLIP_OK ||
        (st = load_special(&ld, "bos_token", true, &tok->bos, NULL)) != UNCLIP_OK ||
        (st = load_special(&ld, "eos_token", true, &tok->eos, NULL)) != UNCLIP_OK ||
        (st = load_special(&ld, "pad_token", true, &tok->pad, NULL)) != UNCLIP_OK ||
        (st = load_special(&ld, "unk_token", false, &tok->unk, NULL)) != UNCLIP_OK)
        goto done;
    if (tok->unk < 0)
        tok->unk = tok->eos;
    /* CLIPTokenizer's pre-token regex and BPE cache hard-code these two strings. */
    tok->sot_id = vocab_id(&ld, "<|startoftext|>");
    tok->eot_id = vocab_id(&ld, "<|endoftext|>");
    if (tok->sot_id < 0)
        tok->sot_id = tok->unk;
    else
        ld.covered[tok->sot_id] = 1;
    if (tok->eot_id < 0)
        tok->eot_id = tok->unk;
    else
        ld.covered[tok->eot_id] = 1;
    set_limits(tok);
    for (int32_t id = 0; id < tok->n_vocab; id++) {
        if (!ld.covered[id]) {
            st = unclip__fail(err, UNCLIP_E_MODEL,
                              "%s: token '%s' (id %d) is neither a byte symbol, a special token "
                              "nor the result of a merge in merges.txt (%d merges; is it "
                              "truncated?)", ld.vocab_path, tok->pool + tok->tok_off[id], id,
                              tok->n_merges);
            goto done;
        }
    }
done:
    unclip__json_free(ld.vj);
    unclip__json_free(ld.smap);
    unclip__json_free(ld.cfg);
    unclip__free(ld.covered);
    unclip__free(ld.vhash);
    g_free(ld.vocab_path);
    g_free(ld.merges_path);
    g_free(ld.smap_path);
    g_free(ld.cfg_path);
    if (st != UNCLIP_OK) {
        unclip__tokenizer_free(ld.tok);
        return st;
    }
    *out = ld.tok;
    return UNCLIP_OK;
}

/* ---- BPE ------------------------------------------------------------------------------------
 *
 * The reference repeats: take the adjacent pair with the lowest merge rank, merge all its
 * non-overlapping occurrences left to right, until no pair has a rank. Here the pairs sit in
 * a min-heap keyed by (rank, position); a pass pops every entry of the lowest rank first
 * (positions come out in increasing order), drops stale ones, then merges left to right.
 * Pairs created by a pass never have that pass's rank (the merged symbol is longer than both
 * halves), so collecting the pass before merging reproduces the reference exactly, in
 * O(n log n) instead of O(n^2) for long words. Symbols are vocab ids (load checked that every
 * merge result is a vocab token). */

struct bpe_ws {
    int32_t *sym, *nxt, *prv;
    uint64_t *heap;
    uint32_t *batch;
    size_t cap;      /* symbols */
    size_t heap_cap; /* 3 * cap: one entry per initial pair plus two per merge */
};

static bool
grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return false;
        c *= 2;
    }
    if (c > SIZE_MAX / elem)
        return false;
    void *q = unclip__realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

static bool
bpe_reserve(struct bpe_ws *w, size_t n)
{
    if (n <= w->cap)
        return true;
    size_t c = w->cap ? w->cap : 64;
    while (c < n) {
        if (c > (SIZE_MAX / 3) / 16)
            return false;
        c *= 2;
    }
    int32_t *sym = unclip__realloc(w->sym, c * sizeof *sym);
    if (sym)
        w->sym = sym;
    int32_t *nxt = unclip__realloc(w->nxt, c * sizeof *nxt);
    if (nxt)
        w->nxt = nxt;
    int32_t *prv = unclip__realloc(w->prv, c * sizeof *prv);
    if (prv)
        w->prv = prv;
    uint32_t *batch = unclip__realloc(w->batch, c * sizeof *batch);
    if (batch)
        w->batch = batch;
    uint64_t *heap = unclip__realloc(w->heap, 3 * c * sizeof *heap);
    if (heap)
        w->heap = heap;
    if (!sym || !nxt || !prv || !batch || !heap)
        return false;
    w->cap = c;
    w->heap_cap = 3 * c;
    return true;
}

static void
bpe_ws_free(struct bpe_ws *w)
{
    unclip__free(w->sym);
    unclip__free(w->nxt);
    unclip__free(w->prv);
    unclip__free(w->heap);
    unclip__free(w->batch);
}

static void
heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t
heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && h[c + 1] < h[c])
            c++;
        if (v <= h[c])
            break;
        h[i] = h[c];
        i = c;
    }
    if (m)
        h[i] = v;
    return top;
}

/* Pushes the pair starting at symbol i (if it has a rank). */
static void
bpe_push(const struct unclip_tokenizer *tok, struct bpe_ws *w, size_t *hn, int32_t i)
{
    if (i < 0 || w->nxt[i] < 0)
        return;
    const struct pair_slot *s = pair_find(tok, w->sym[i], w->sym[w->nxt[i]]);
    if (s)
        heap_push(w->heap, hn, ((uint64_t)(uint32_t)s->rank << 32) | (uint32_t)i);
}

/* BPE of bytes[0..n) (n >= 1, n < 2^31), "</w>" on the last symbol when eow. On return the symbols are w->sym[] along the nxt
 * chain from index 0. */
static void
bpe_run(const struct unclip_tokenizer *tok, struct bpe_ws *w, const uint8_t *bytes, size_t n,
        bool eow)
{
    for (size_t i = 0; i < n; i++) {
        w->sym[i] = i + 1 < n || !eow ? tok->byte_id[bytes[i]] : tok->byte_w_id[bytes[i]];
        w->nxt[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        w->prv[i] = (int32_t)i - 1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        bpe_push(tok, w, &hn, (int32_t)i);
    while (hn) {
        uint32_t rank = (uint32_t)(w->heap[0] >> 32);
        size_t nb = 0;
        while (hn && (uint32_t)(w->heap[0] >> 32) == rank)
            w->batch[nb++] = (uint32_t)heap_pop(w->heap, &hn);
        for (size_t k = 0; k < nb; k++) {
            int32_t i = (int32_t)w->batch[k];
            /* Stale: i was merged into its left neighbour, or the pair changed since. A dead
             * symbol has prv == -2. */
            if (w->prv[i] == -2 || w->nxt[i] < 0)
                continue;
            int32_t j = w->nxt[i];
            const struct pair_slot *s = pair_find(tok, w->sym[i], w->sym[j]);
            if (!s || (uint32_t)s->rank != rank)
                continue;
            w->sym[i] = s->merged;
            w->nxt[i] = w->nxt[j];
            if (w->nxt[j] >= 0)
                w->prv[w->nxt[j]] = i;
            w->prv[j] = -2;
            w->nxt[j] = -1;
            bpe_push(tok, w, &hn, w->prv[i]);
            bpe_push(tok, w, &hn, i);
        }
    }
}

unclip_status
unclip__tokenizer_bpe(const struct unclip_tokenizer *tok, const char *bytes, size_t n,
                      int32_t *out, size_t cap, size_t *n_out, struct unclip_err *err)
{
    if (!tok || !bytes || !n || (!out && cap) || !n_out || n >= INT32_MAX)
        return unclip__fail(err, UNCLIP_E_ARG, "tokenizer: bad arguments to bpe");
    struct bpe_ws w = {0};
    if (!bpe_reserve(&w, n)) {
        bpe_ws_free(&w);
        return nomem(err, "tokenizer");
    }
    bpe_run(tok, &w, (const uint8_t *)bytes, n, true);
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = w.nxt[i], k++)
        if (k < cap)
            out[k] = w.sym[i];
    *n_out = k;
    bpe_ws_free(&w);
    return UNCLIP_OK;
}

/* ---- encoding ------------------------------------------------------------------------------ */

struct enc {
    const struct unclip_tokenizer *tok;
    int32_t content[MAX_CONTENT];
    int64_t n_content;
    bool capped;
    bool truncated;
    size_t dropped_offset;
    bool dropped_partial;
    /* the word (or literal) being emitted */
    size_t word_start;
    int64_t word_first;
    /* scratch */
    gunichar *w;   /* cleaned code points of the current word */
    size_t w_n, w_cap;
    gunichar *d;   /* decomposed / normalised */
    size_t d_cap;
    gunichar *low; /* lower-cased */
    size_t low_cap;
    uint8_t *u8;   /* UTF-8 of a word or a pre-token */
    size_t u8_cap;
    struct bpe_ws bpe;
};

static void
emit(struct enc *e, int32_t id)
{
    if (e->n_content < MAX_CONTENT) {
        e->content[e->n_content] = id;
    } else if (e->n_content == MAX_CONTENT) {
        e->truncated = true;
        e->dropped_offset = e->word_start;
        e->dropped_partial = e->word_first < MAX_CONTENT;
    }
    e->n_content++;
    if (e->n_content > UNCLIP_TOKENIZER_COUNT_CAP)
        e->capped = true;
}

static unclip_status
emit_piece(struct enc *e, const gunichar *p, size_t n, struct unclip_err *err)
{
    if (!grow((void **)&e->u8, &e->u8_cap, 4 * n, 1))
        return nomem(err, "tokenizer");
    size_t nb = 0;
    for (size_t i = 0; i < n; i++)
        nb += utf8_put(p[i], e->u8 + nb);
    /* A giant pre-token: tokenize its head only (without the word end) and stop there. */
    bool cut = nb > e->tok->limit;
    if (cut)
        nb = e->tok->limit;
    if (!bpe_reserve(&e->bpe, nb))
        return nomem(err, "tokenizer");
    bpe_run(e->tok, &e->bpe, e->u8, nb, !cut);
    for (int32_t i = 0; i >= 0; i = e->bpe.nxt[i])
        emit(e, e->bpe.sym[i]);
    if (cut)
        e->capped = true;
    return UNCLIP_OK;
}

/* Does p[0..n) start with the ASCII literal lit, where "s" also matches U+017F (the
 * reference's regex is case-insensitive, and long s folds to s)? *exact: no long s used. */
static bool
match_ci(const gunichar *p, size_t n, const char *lit, bool *exact)
{
    size_t k = strlen(lit);
    if (n < k)
        return false;
    *exact = true;
    for (size_t i = 0; i < k; i++) {
        if (p[i] == (gunichar)lit[i])
            continue;
        if (lit[i] == 's' && p[i] == 0x17F) {
            *exact = false;
            continue;
        }
        return false;
    }
    return true;
}

/* CLIP's pre-token regex over one lower-cased word, then BPE of each piece. */
static unclip_status
pretokenize(struct enc *e, const gunichar *p, size_t n, struct unclip_err *err)
{
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i = 0;
    while (i < n && !e->capped) {
        gunichar c = p[i];
        size_t j = 0;
        bool exact = false;
        if (c == '<') {
            if (match_ci(p + i, n - i, "<|startoftext|>", &exact)) {
                j = i + 15;
                if (exact) {
                    emit(e, e->tok->sot_id);
                    i = j;
                    continue;
                }
            } else if (match_ci(p + i, n - i, "<|endoftext|>", &exact)) {
                j = i + 13;
                if (exact) {
                    emit(e, e->tok->eot_id);
                    i = j;
                    continue;
                }
            }
        } else if (c == '\'') {
            for (size_t k = 0; k < sizeof contractions / sizeof *contractions; k++) {
                if (match_ci(p + i, n - i, contractions[k], &exact)) {
                    j = i + strlen(contractions[k]);
                    break;
                }
            }
        }
        if (!j) {
            j = i + 1;
            if (is_letter(c)) {
                while (j < n && is_letter(p[j]))
                    j++;
            } else if (!is_number(c)) {
                while (j < n && !is_letter(p[j]) && !is_number(p[j]))
                    j++;
            }
        }
        unclip_status st = emit_piece(e, p + i, j - i, err);
        if (st != UNCLIP_OK)
            return st;
        i = j;
    }
    return UNCLIP_OK;
}

/* Canonical decomposition with canonical ordering (NFD). GLib's own ordering is an insertion
 * sort, quadratic in a run of combining marks; sorting here (stable, by combining class)
 * hands it text it only has to verify, so a prompt of a million accents stays linear. */
static bool
nfd(struct enc *e, size_t *n_out)
{
    size_t total = 0;
    gunichar tmp[G_UNICHAR_MAX_DECOMPOSITION_LENGTH];
    for (size_t i = 0; i < e->w_n; i++)
        total += g_unichar_fully_decompose(e->w[i], FALSE, tmp, G_N_ELEMENTS(tmp));
    if (!grow((void **)&e->d, &e->d_cap, total, sizeof *e->d))
        return false;
    size_t k = 0;
    for (size_t i = 0; i < e->w_n; i++)
        k += g_unichar_fully_decompose(e->w[i], FALSE, e->d + k, G_UNICHAR_MAX_DECOMPOSITION_LENGTH);
    /* Stable counting sort of each run of non-starters by combining class. */
    size_t i = 0;
    while (i < k) {
        if (g_unichar_combining_class(e->d[i]) == 0) {
            i++;
            continue;
        }
        size_t s = i;
        while (i < k && g_unichar_combining_class(e->d[i]) != 0)
            i++;
        size_t len = i - s;
        if (len < 2)
            continue;
        bool sorted = true;
        for (size_t t = s + 1; t < i && sorted; t++)
            sorted = g_unichar_combining_class(e->d[t - 1]) <= g_unichar_combining_class(e->d[t]);
        if (sorted)
            continue;
        /* Insertion sort is fine for short runs; counting sort otherwise. */
        if (len <= 32) {
            for (size_t t = s + 1; t < i; t++) {
                gunichar v = e->d[t];
                int cv = g_unichar_combining_class(v);
                size_t u = t;
                while (u > s && g_unichar_combining_class(e->d[u - 1]) > cv) {
                    e->d[u] = e->d[u - 1];
                    u--;
                }
                e->d[u] = v;
            }
        } else {
            gunichar *tmpbuf = unclip__malloc(len * sizeof *tmpbuf);
            if (!tmpbuf)
                return false;
            size_t count[257] = {0};
            for (size_t t = s; t < i; t++)
                count[g_unichar_combining_class(e->d[t]) + 1]++;
            for (int c = 1; c < 257; c++)
                count[c] += count[c - 1];
            for (size_t t = s; t < i; t++)
                tmpbuf[count[g_unichar_combining_class(e->d[t])]++] = e->d[t];
            memcpy(e->d + s, tmpbuf, len * sizeof *tmpbuf);
            unclip__free(tmpbuf);
        }
    }
    *n_out = k;
    return true;
}

/* NFC of the current word into e->d; *n_out its length. */
static unclip_status
normalize_word(struct enc *e, size_t *n_out, struct unclip_err *err)
{
    bool simple = true;
    for (size_t i = 0; i < e->w_n && simple; i++)
        simple = e->w[i] < 0x300; /* below U+0300 every character is already NFC */
    if (simple) {
        if (!grow((void **)&e->d, &e->d_cap, e->w_n, sizeof *e->d))
            return nomem(err, "tokenizer");
        memcpy(e->d, e->w, e->w_n * sizeof *e->d);
        *n_out = e->w_n;
        return UNCLIP_OK;
    }
    size_t k = 0;
    if (!nfd(e, &k) || !grow((void **)&e->u8, &e->u8_cap, 4 * k + 1, 1))
        return nomem(err, "tokenizer");
    size_t nb = 0;
    for (size_t i = 0; i < k; i++)
        nb += utf8_put(e->d[i], e->u8 + nb);
    gchar *nfc = g_utf8_normalize((const gchar *)e->u8, (gssize)nb, G_NORMALIZE_NFC);
    if (!nfc)
        return unclip__fail(err, UNCLIP_E_INTERNAL, "tokenizer: NFC normalisation failed");
    /* NFC is never longer than its NFD input. */
    size_t m = 0;
    for (const gchar *q = nfc; *q; q = g_utf8_next_char(q))
        e->d[m++] = g_utf8_get_char(q);
    g_free(nfc);
    *n_out = m;
    return UNCLIP_OK;
}

static unclip_status
flush_word(struct enc *e, struct unclip_err *err)
{
    if (!e->w_n || e->capped) {
        e->w_n = 0;
        return UNCLIP_OK;
    }
    e->word_first = e->n_content;
    size_t m = 0;
    unclip_status st = normalize_word(e, &m, err);
    if (st != UNCLIP_OK)
        return st;
    if (!grow((void **)&e->low, &e->low_cap, 2 * m, sizeof *e->low))
        return nomem(err, "tokenizer");
    size_t nl = lower_word(e->d, m, e->low);
    e->w_n = 0;
    return pretokenize(e, e->low, nl, err);
}

static unclip_status
push_cp(struct enc *e, gunichar c, size_t at, struct unclip_err *err)
{
    if (e->w_n == e->tok->limit) {
        /* A giant word: tokenize its head and stop (see set_limits). */
        unclip_status st = flush_word(e, err);
        e->capped = true;
        return st;
    }
    if (!e->w_n)
        e->word_start = at;
    if (!grow((void **)&e->w, &e->w_cap, e->w_n + 1, sizeof *e->w))
        return nomem(err, "tokenizer");
    e->w[e->w_n++] = c;
    return UNCLIP_OK;
}

/* Longest literal special token at s[0..n), or NULL. */
static const struct literal *
match_literal(const struct unclip_tokenizer *tok, const uint8_t *s, size_t n)
{
    if (!tok->lit_first[s[0]])
        return NULL;
    for (int i = 0; i < tok->n_lit; i++)
        if (tok->lit[i].len <= n && memcmp(s, tok->lit[i].text, tok->lit[i].len) == 0)
            return &tok->lit[i];
    return NULL;
}

/* input[from..len) as a short display string (see dropped_preview in tokenizer.h). */
static void
make_preview(const uint8_t *s, size_t len, size_t from, char *out, size_t size)
{
    static const char ellipsis[] = "\xE2\x80\xA6"; /* U+2026 */
    size_t k = 0;
    bool space = false;
    out[0] = 0;
    for (size_t i = from; i < len;) {
        size_t nb;
        bool bad;
        gunichar c = utf8_next(s + i, len - i, &nb, &bad);
        i += nb;
        enum clean_class cl = clean_class(c);
        if (cl == CL_DROP)
            continue;
        if (cl == CL_SPACE) {
            space = k > 0;
            continue;
        }
        uint8_t buf[8];
        size_t cb = utf8_put(c, buf);
        if (k + (space ? 1 : 0) + cb + sizeof ellipsis > size) {
            memcpy(out + k, ellipsis, sizeof ellipsis);
            return;
        }
        if (space)
            out[k++] = ' ';
        space = false;
        memcpy(out + k, buf, cb);
        k += cb;
        out[k] = 0;
    }
}

unclip_status
unclip__tokenizer_encode(const struct unclip_tokenizer *tok, const char *text, size_t len,
                         struct unclip_tokens *out, struct unclip_err *err)
{
    if (!tok || !out || (!text && len))
        return unclip__fail(err, UNCLIP_E_ARG, "tokenizer: NULL argument to encode");
    struct enc *e = unclip__calloc(1, sizeof *e);
    if (!e)
        return nomem(err, "tokenizer");
    e->tok = tok;
    const uint8_t *s = (const uint8_t *)text;
    int64_t n_bad = 0;
    unclip_status st = UNCLIP_OK;
    size_t pos = 0;
    while (pos < len && !e->capped && st == UNCLIP_OK) {
        const struct literal *lit = match_literal(tok, s + pos, len - pos);
        if (lit) {
            if ((st = flush_word(e, err)) != UNCLIP_OK || e->capped)
                break;
            e->word_start = pos;
            e->word_first = e->n_content;
            emit(e, lit->id);
            pos += lit->len;
            continue;
        }
        size_t nb;
        bool bad;
        gunichar c = utf8_next(s + pos, len - pos, &nb, &bad);
        n_bad += bad;
        switch (clean_class(c)) {
        case CL_DROP:
            break;
        case CL_SPACE:
            st = flush_word(e, err);
            break;
        case CL_CJK:
            if ((st = flush_word(e, err)) == UNCLIP_OK && (st = push_cp(e, c, pos, err)) == UNCLIP_OK)
                st = flush_word(e, err);
            break;
        case CL_KEEP:
            st = push_cp(e, c, pos, err);
            break;
        }
        pos += nb;
    }
    if (st == UNCLIP_OK)
        st = flush_word(e, err);
    if (st == UNCLIP_OK) {
        if (e->capped) {
            /* Count the invalid bytes of the rest too: the number must not depend on the cap. */
            for (; pos < len;) {
                size_t nb;
                bool bad;
                utf8_next(s + pos, len - pos, &nb, &bad);
                n_bad += bad;
                pos += nb;
            }
        }
        struct unclip_tokens *r = out;
        int32_t kept = e->n_content < MAX_CONTENT ? (int32_t)e->n_content : MAX_CONTENT;
        r->ids[0] = tok->bos;
        memcpy(r->ids + 1, e->content, (size_t)kept * sizeof *r->ids);
        r->ids[kept + 1] = tok->eos;
        for (int32_t i = kept + 2; i < UNCLIP_TOKENIZER_MAX_IDS; i++)
            r->ids[i] = tok->pad;
        for (int32_t i = 0; i < UNCLIP_TOKENIZER_MAX_IDS; i++)
            r->mask[i] = i < kept + 2;
        r->n_ids = kept + 2;
        r->n_untruncated = e->n_content + 2;
        r->count_exact = !e->capped;
        r->truncated = e->truncated;
        r->dropped_offset = e->truncated ? e->dropped_offset : len;
        r->dropped_partial = e->truncated && e->dropped_partial;
        r->n_invalid_utf8 = n_bad;
        r->dropped_preview[0] = 0;
        if (e->truncated)
            make_preview(s, len, e->dropped_offset, r->dropped_preview,
                         sizeof r->dropped_preview);
    }
    unclip__free(e->w);
    unclip__free(e->d);
    unclip__free(e->low);
    unclip__free(e->u8);
    bpe_ws_free(&e->bpe);
    unclip__free(e);
    return st;
}

/* ---- decoding ------------------------------------------------------------------------------ */

unclip_status
unclip__tokenizer_decode(const struct unclip_tokenizer *tok, const int32_t *ids, size_t n,
                         bool skip_special, char **out, struct unclip_err *err)
{
    if (!tok || (!ids && n) || !out)
        return unclip__fail(err, UNCLIP_E_ARG, "tokenizer: NULL argument to decode");
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_vocab)
            return unclip__fail(err, UNCLIP_E_ARG, "tokenizer: id %d at position %zu is not in "
                                "0..%d", ids[i], i, tok->n_vocab - 1);
        total += strlen(tok->pool + tok->tok_off[ids[i]]) + 1;
    }
    char *buf = unclip__malloc(total);
    if (!buf)
        return nomem(err, "tokenizer");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && (ids[i] == tok->bos || ids[i] == tok->eos))
            continue;
        const char *t = tok->pool + tok->tok_off[ids[i]];
        size_t tl = strlen(t);
        bool eow = tl >= EOW_LEN && memcmp(t + tl - EOW_LEN, EOW, EOW_LEN) == 0;
        if (eow)
            tl -= EOW_LEN;
        for (const char *q = t; q < t + tl;) {
            gunichar c = g_utf8_get_char(q);
            const char *nq = g_utf8_next_char(q);
            if (c < 0x144 && tok->sym_byte[c] >= 0) {
                buf[k++] = (char)tok->sym_byte[c];
            } else { /* not a byte symbol (special tokens): copy as is */
                memcpy(buf + k, q, (size_t)(nq - q));
                k += (size_t)(nq - q);
            }
            q = nq;
        }
        if (eow)
            buf[k++] = ' ';
    }
    /* Trim, then repair what the bytes do not spell as UTF-8. */
    size_t a = 0;
    while (a < k && ascii_space(buf[a]))
        a++;
    while (k > a && ascii_space(buf[k - 1]))
        k--;
    gchar *valid = g_utf8_make_valid(buf + a, (gssize)(k - a));
    unclip__free(buf);
    char *res = valid ? unclip__strdup(valid) : NULL;
    g_free(valid);
    if (!res)
        return nomem(err, "tokenizer");
    *out = res;
    return UNCLIP_OK;
}
