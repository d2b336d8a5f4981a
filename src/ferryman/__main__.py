from ferryman.entry import main

main()
