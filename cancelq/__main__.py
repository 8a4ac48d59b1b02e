from cancelq.entry import main

main()
