from audioqc.cli import main

raise SystemExit(main())
