"""platform_server package."""

import lazy_imports

lazy_imports.install()
