package merge

// DivNumericText divides like numeric_div, for the server comparison test.
func DivNumericText(a, b string) string {
	x, _ := parseDecimal(a)
	y, _ := parseDecimal(b)
	q, err := divDecimal(x, y)
	if err != nil {
		return err.Error()
	}
	return q.String()
}
