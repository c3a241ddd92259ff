from spinemu.host.cli import main

raise SystemExit(main())
