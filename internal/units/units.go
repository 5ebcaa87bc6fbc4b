// Package units formats quantities for people.
package units

import "fmt"

// Bytes writes n bytes in binary units, one decimal (as kubo's repo stat):
// "512 B", "1.5 KiB", "9.3 GiB".
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for x := n / unit; x >= unit && exp < 5; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
