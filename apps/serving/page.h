#pragma once
// inpaint-serve's web page (apps/serving/page/index.html), embedded at build time by
// cmake/embed_page.cmake: one self-contained HTML file (no CDN), so it works offline.
namespace pconv::serve {
extern const char kPageHtml[];
}  // namespace pconv::serve
