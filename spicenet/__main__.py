from spicenet.cli import main

raise SystemExit(main())
