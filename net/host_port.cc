// host_port.cc: ParseHostPort, the "HOST:PORT" and "[V6]:PORT" forms of an address.
//
// Only the text is checked here; names are resolved (getaddrinfo) by Connect and Listen.
#include <charconv>
#include <string>

#include "net/connection.h"

namespace cascadefs::net {

Result<HostPort> ParseHostPort(std::string_view text) {
  const auto invalid = [&](std::string_view cause) {
    return Status::InvalidArgument("address \"" + std::string(text) + "\": " + std::string(cause));
  };
  HostPort out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return invalid("'[' without ']'");
    out.host = std::string(text.substr(1, close - 1));
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      return invalid("expected \":PORT\" after ']'");
    }
    port_text = text.substr(close + 2);
    if (out.host.find(':') == std::string::npos) return invalid("[...] holds an IPv6 address");
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return invalid("expected HOST:PORT or [V6]:PORT");
    out.host = std::string(text.substr(0, colon));
    if (out.host.find(':') != std::string::npos) {
      return invalid("an IPv6 address goes in brackets: [V6]:PORT");
    }
    port_text = text.substr(colon + 1);
  }
  if (out.host.empty()) return invalid("empty host");
  if (out.host.find('\0') != std::string::npos) return invalid("NUL in the host");
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return invalid("port must be a number 0..65535");
  }
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

}  // namespace cascadefs::net
