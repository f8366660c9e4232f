// A non-owning reference to a callable: lets the receive path call a handler without
// allocating (std::function may) and without putting the ring code in headers.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

namespace shmbus {

template <class Sig>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
public:
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
    FunctionRef(F&& f) noexcept  // NOLINT: implicit by design, like std::function_ref
        : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* obj, Args... args) -> R {
              return (*static_cast<std::add_pointer_t<F>>(obj))(std::forward<Args>(args)...);
          }) {}
    R operator()(Args... args) const { return call_(obj_, std::forward<Args>(args)...); }

private:
    void* obj_;
    R (*call_)(void*, Args...);
};

}  // namespace shmbus
