from ferryman.start import main

main()
