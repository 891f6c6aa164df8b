from flowlab.cli import main

raise SystemExit(main())
