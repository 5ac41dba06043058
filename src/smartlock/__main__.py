from smartlock.cli import main

main()
