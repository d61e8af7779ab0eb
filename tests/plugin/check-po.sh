#!/usr/bin/env bash
# The plug-in's translations are complete: every translatable string of the sources is in
# po/gimp-unclip.pot (and the template holds nothing else), every source file with strings is
# in po/POTFILES, and each catalogue of po/LINGUAS translates every string of the template,
# with nothing fuzzy and printf formats that match (msgfmt --check).
#
#   tests/plugin/check-po.sh [SOURCE_ROOT]
# After changing strings: `ninja -C build gimp-unclip-pot gimp-unclip-update-po` (with the
# plug-in configured), or the xgettext line below, then translate the new entries.
set -euo pipefail
src=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cd "$src"
for tool in xgettext msgcmp msgfmt; do
    command -v $tool >/dev/null || { echo "SKIP: no $tool (gettext)"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# The same keywords as po/meson.build.
xgettext --package-name=gimp-unclip --from-code=UTF-8 --add-comments=TRANSLATORS: \
    --keyword=_ --keyword=N_ --keyword=C_:1c,2 --keyword=NC_:1c,2 --keyword=ngettext:1,2 \
    -f po/POTFILES -o "$tmp/fresh.pot"

for f in $(grep -l -E '\b(N?C?_|ngettext) \(' plugin/*.c ui/*.c); do
    grep -qx "$f" po/POTFILES || { echo "FAIL: $f has translatable strings but is not in po/POTFILES"; status=1; }
done
if msgcmp --use-untranslated "$tmp/fresh.pot" po/gimp-unclip.pot >"$tmp/missing" 2>&1; then
    echo "ok: every translatable string is in po/gimp-unclip.pot ($(grep -c '^msgid' "$tmp/fresh.pot") strings)"
else
    echo "FAIL: strings missing from po/gimp-unclip.pot (remake it):"; cat "$tmp/missing"; status=1
fi
if ! msgcmp --use-untranslated po/gimp-unclip.pot "$tmp/fresh.pot" >"$tmp/stale" 2>&1; then
    echo "FAIL: po/gimp-unclip.pot holds strings the sources no longer have:"; cat "$tmp/stale"; status=1
fi

for lang in $(grep -v '^#' po/LINGUAS); do
    po=po/$lang.po
    if ! msgcmp "$po" po/gimp-unclip.pot >"$tmp/$lang" 2>&1; then
        echo "FAIL: $po lacks strings of the template:"; head -20 "$tmp/$lang"; status=1
        continue
    fi
    stats=$(LC_ALL=C msgfmt --check --statistics -o /dev/null "$po" 2>&1) ||
        { echo "FAIL: $po: $stats"; status=1; continue; }
    if echo "$stats" | grep -q -E 'untranslated|fuzzy'; then
        echo "FAIL: $po is incomplete: $stats"; status=1
    else
        echo "ok: $po: $stats"
    fi
done
exit $status
