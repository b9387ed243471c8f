package d

// D is a Go file.
const D = 1
