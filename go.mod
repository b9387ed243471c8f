module github.com/densessm/densessm

go 1.26
