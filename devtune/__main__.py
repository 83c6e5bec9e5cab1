from devtune.cli import main

raise SystemExit(main())
