from cancelq.cli.entry import main

main()
